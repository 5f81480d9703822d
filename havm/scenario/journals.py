"""The guests' disk journals, read straight from the files at the end of a scenario.

Every emulated guest appends numbered records to its virtual disk, each stamped with
the lease generation of the copy that wrote it. Whatever faults a scenario injects,
the journal on every disk must be one run from record 1 (no acknowledged write lost or
written twice) whose lease generations never go back (no stale copy wrote after a newer
one took over). This is the data side of "a VM never runs on two hosts at once": two
live copies that both wrote would leave exactly such a trace.
"""

from __future__ import annotations

from pathlib import Path

from node_agent.adapters.files import read_journal_records

DISK_FILE = "disk0.vhd"


def journal_violations(root: Path) -> list[str]:
    """One sentence per disk under `root` whose journal is broken; empty when all hold."""
    violations = []
    for disk in sorted(root.rglob(DISK_FILE)):
        try:
            records = read_journal_records(disk)
        except OSError as error:
            violations.append(f"the journal of {_where(disk, root)} cannot be read: {error}")
            continue
        for expected_seq, record in enumerate(records, start=1):
            if record.seq != expected_seq:
                violations.append(
                    f"the journal of {_where(disk, root)} jumps from record {expected_seq - 1} "
                    f"to {record.seq}: a write was lost or repeated"
                )
                break
        generations = [record.generation for record in records]
        for index in range(1, len(generations)):
            if generations[index] < generations[index - 1]:
                violations.append(
                    f"the journal of {_where(disk, root)} has record {records[index].seq} written "
                    f"under lease generation {generations[index]} after one under "
                    f"{generations[index - 1]}: a stale copy wrote after the newer one took over"
                )
                break
    return violations


def _where(disk: Path, root: Path) -> str:
    # .../<storage>/<vm id>/disk0.vhd: the VM's id and where its files are.
    relative = disk.parent.relative_to(root)
    return f"VM {relative.name} ({relative.parent})"

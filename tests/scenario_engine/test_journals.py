"""The scenario runner's journal check finds a lost write and a stale copy's write."""

from __future__ import annotations

from pathlib import Path

from havm.scenario.journals import journal_violations
from node_agent.core.journal import JournalRecord, encode_record, record_offset


def write_disk(path: Path, records: list[tuple[int, int]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as disk:
        for slot, (seq, generation) in enumerate(records, start=1):
            disk.seek(record_offset(slot))
            disk.write(encode_record(JournalRecord(seq, generation, 1_000 * seq)))


def test_an_unbroken_journal_passes(tmp_path: Path) -> None:
    write_disk(tmp_path / "san" / "csv" / "Volume1" / "vm-a" / "disk0.vhd", [(1, 1), (2, 1), (3, 2)])
    assert journal_violations(tmp_path) == []


def test_a_gap_and_an_older_lease_after_a_newer_one_are_named(tmp_path: Path) -> None:
    write_disk(tmp_path / "san" / "csv" / "Volume1" / "vm-gap" / "disk0.vhd", [(1, 1), (3, 1)])
    write_disk(tmp_path / "hosts" / "n1" / "disks" / "C" / "vm-stale" / "disk0.vhd", [(1, 2), (2, 1)])
    violations = journal_violations(tmp_path)
    assert len(violations) == 2
    assert "VM vm-gap (san/csv/Volume1)" in violations[1] and "jumps from record 1 to 3" in violations[1]
    assert "VM vm-stale (hosts/n1/disks/C)" in violations[0]
    assert "lease generation 1 after one under 2" in violations[0]

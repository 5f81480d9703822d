"""The administrator's changes to the host, kept in its state directory.

    <state-dir>/host-changes.json    {"networks": [...], "volumes": [...]}

The configuration file `havm up` wrote stays as it is; this file, once a change was
made, holds the host's whole lists of networks and volumes, which win over the
configuration file's when the agent starts. It is replaced whole (files.write_atomically)
so that a crash leaves the old or the new lists, never half of them.
"""

from __future__ import annotations

import json
from pathlib import Path

from node_agent.adapters.files import write_atomically
from node_agent.core.errors import ConfigError
from node_agent.core.host_changes import HostChanges, changes_from_raw, changes_to_raw

HOST_CHANGES_FILE = "host-changes.json"


class HostChangesFile:
    """The host-changes store (core.host_changes.HostChangesStore) on a file."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / HOST_CHANGES_FILE

    def load(self) -> HostChanges | None:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ConfigError(str(self.path), f"cannot be read: {exc.strerror}") from None
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise ConfigError(str(self.path), f"is not valid JSON: {exc}") from None
        try:
            return changes_from_raw(raw)
        except ConfigError as exc:
            raise ConfigError(f"{self.path}: {exc.field}", exc.problem) from None

    def save(self, changes: HostChanges) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(self.path, (json.dumps(changes_to_raw(changes), indent=2) + "\n").encode())

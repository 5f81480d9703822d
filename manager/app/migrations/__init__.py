"""Moving VMs between hosts: live, quick and storage migration, orchestrated, never relayed.

The manager checks a move at once (the VM, both hosts, the destination's own
compatibility verdict) and then runs it as a job. A live migration waits for a slot
on both hosts, asks the source agent to stream the VM to the destination agent, and
mirrors the progress it reports; memory bytes flow agent to agent. A quick migration
saves, moves ownership with a newer lease, and restores. Every migration is a
persisted record whose step is written before it is acted on, so that a manager
restarted mid-way settles it from what the agents report.

One module per flow: `requests` (checks and the record), `live`, `quick`, `storage`
(files on one host), `recovery` (after a restart), `slots` (the live-migration queue),
`endings` (settling a migration that lost track of its VM), around the shared
`context`; `service` composes them. Where the VM's record goes is decided in
`manager.core.migration_outcome`.
"""

from manager.app.migrations.context import MigrationFailed
from manager.app.migrations.service import MigrationService

__all__ = ["MigrationFailed", "MigrationService"]

"""How a migration ends when it did not end cleanly.

Every flow can lose track of its VM: a stream breaks, an agent stops answering, the
manager restarts, a failover takes the VM. They all end the same way: the rules in
`manager.core.migration_outcome` say where the VM's record goes, and the migration is
recorded completed or failed with a sentence that says where the VM is.
"""

from __future__ import annotations

import logging

from manager.app.migrations.context import MigrationContext, MigrationFailed
from manager.core.errors import ManagerError
from manager.core.migration import Outcome, is_open
from manager.core.migration_outcome import conclude as decide_conclusion
from manager.core.migration_outcome import where_it_is
from manager.core.migration_phase import MigrationPhase
from manager.core.model import MigrationRecord, ReportedVm
from manager.core.states import MigrationState

log = logging.getLogger(__name__)


async def conclude(
    ctx: MigrationContext,
    migration: MigrationRecord,
    outcome: Outcome,
    source_report: ReportedVm | None,
    target_report: ReportedVm | None,
    error: str,
) -> str:
    """Record the VM where `outcome` leaves it; complete the migration if the VM moved,
    else fail it (MigrationFailed) saying where the VM is."""
    async with ctx.vms.lock(migration.vm_id):
        vm = ctx.store.get_vm(migration.vm_id)
        target = ctx.store.get_host(migration.destination)
        conclusion = decide_conclusion(vm, migration, outcome, source_report, target_report, target)
        if conclusion.taken_by_failover and vm is not None:
            # The failover of a failed host took the VM: its record is the failover's,
            # and the migration only lets go of it.
            error += f"; the failover of host {vm.failover_from or migration.source} took the VM"
        if conclusion.vm is not None and not (conclusion.taken_by_failover and conclusion.vm == vm):
            ctx.vms.record(conclusion.vm)
    outcome = conclusion.outcome
    if outcome is Outcome.MOVED:
        done = ctx.save(migration, state=MigrationState.COMPLETED, phase=MigrationPhase.COMPLETED, error="")
        summary = f"VM {done.vm_name} runs on {done.destination} (the migration ended unobserved: {error})"
        ctx.emit(done, summary)
        return summary
    where = where_it_is(migration, outcome, conclusion.taken_by_failover)
    failed = ctx.save(migration, state=MigrationState.FAILED, error=error)
    sentence = f"migration of VM {failed.vm_name} to {failed.destination} failed: {error}; {where}"
    ctx.emit(failed, sentence)
    raise MigrationFailed(sentence)


async def abandon(ctx: MigrationContext, migration_id: str, error: Exception) -> None:
    """Whatever escaped a flow: the migration fails and lets go of its VM, whose next
    refresh records where the agents have it. An error that is not a ManagerError is a
    bug, and logged as one."""
    migration = ctx.store.get_migration(migration_id)
    if migration is None or not is_open(migration):
        return
    if isinstance(error, ManagerError):
        why = error.message
    else:
        log.error("migration %s crashed", migration_id, exc_info=error)
        why = f"internal error: {error!r}"
    async with ctx.vms.lock(migration.vm_id):
        vm = ctx.store.get_vm(migration.vm_id)
        if vm is not None:
            ctx.release_vm(vm, migration)
    failed = ctx.save(migration, state=MigrationState.FAILED, error=why)
    ctx.emit(failed, f"migration of VM {failed.vm_name} to {failed.destination} failed: {why}")

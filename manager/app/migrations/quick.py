"""Quick migration: save the VM on the source, move ownership, restore on the destination.

Each step is written into the migration's phase before it is acted on, so that a
manager restarted mid-way knows whether the source may still be saving and whether the
destination may already hold the VM. The destination takes the VM over with a newer
lease, which fences the source's copy; the VM is the destination's from that moment,
whatever happens to the restore.
"""

from __future__ import annotations

import logging

from manager.app import crash_points
from manager.app.jobs import JobHandle
from manager.app.migrations.context import AT_REST, HOLDS_MEMORY, MigrationContext, MigrationFailed
from manager.app.migrations.endings import conclude
from manager.core.errors import ManagerError, NotFoundError
from manager.core.migration import (
    MOVABLE_STATES,
    Outcome,
    holds_new_lease,
    taken_by_failover,
)
from manager.core.migration_outcome import as_reported, moved_to_destination
from manager.core.migration_phase import MigrationPhase
from manager.core.model import HostRecord, MigrationRecord, ReportedVm, VmOperation
from manager.core.states import MigrationState, VmState

log = logging.getLogger(__name__)


class QuickMigration:
    def __init__(self, ctx: MigrationContext) -> None:
        self._ctx = ctx

    async def run(self, job: JobHandle, migration: MigrationRecord) -> str:
        ctx = self._ctx
        source = ctx.host(migration.source)
        target = ctx.host(migration.destination)
        async with ctx.vms.lock(migration.vm_id):
            vm = ctx.store.get_vm(migration.vm_id)
        if vm is None:
            raise NotFoundError(f"VM {migration.vm_name} was deleted")
        if taken_by_failover(vm, migration):
            return await self.leave_to_failover(migration)
        # A VM whose state is not known for sure (a live migration fell back, its source
        # did not answer) may still run: it is saved first, or the move stops.
        must_save = vm.state not in AT_REST
        if vm.state in MOVABLE_STATES:
            migration = ctx.save(migration, vm_state_before=vm.state)
        try:
            if must_save:
                # The guest stops serving here: the downtime runs until its restore ends.
                migration = ctx.save(migration, phase=MigrationPhase.SAVING, down_at=ctx.clock())
                job.progress(10, f"Saving VM {vm.name} on {source.name}")
                reported = await ctx.agents.operate_vm(
                    source.name, source.address or "", vm.id, VmOperation.SAVE
                )
                vm = ctx.observe(vm, reported)
                migration = ctx.save(migration, phase=MigrationPhase.SAVED)
                ctx.crash_points.reach(crash_points.QUICK_SAVED)
            migration = ctx.save(migration, phase=MigrationPhase.TAKING_OVER)
            job.progress(40, f"Moving VM {vm.name} to {target.name}")
            # Under the VM's lock: a failover that marked the VM meanwhile goes first,
            # and one that marks it now waits until this take-over is recorded.
            async with ctx.vms.lock(migration.vm_id):
                current = ctx.store.get_vm(migration.vm_id)
                if current is None:
                    raise NotFoundError(f"VM {migration.vm_name} was deleted")
                taken = None
                if not taken_by_failover(current, migration):
                    taken = await ctx.take_over(current, migration, target)
        except ManagerError as error:
            taken = await ctx.ask(target.name, vm.id)
            if not holds_new_lease(taken, migration.lease_generation):
                return await self.back(migration, f"{error.message}")
        if taken is None:
            return await self.leave_to_failover(migration)
        return await self.forward(job, migration, taken)

    async def leave_to_failover(self, migration: MigrationRecord) -> str:
        return await conclude(
            self._ctx,
            migration,
            Outcome.UNKNOWN,
            None,
            None,
            "the quick migration stopped before its take-over",
        )

    async def forward(self, job: JobHandle, migration: MigrationRecord, taken: ReportedVm) -> str:
        """The destination owns the VM: bring it back to what it was doing there."""
        ctx = self._ctx
        target = ctx.host(migration.destination)
        async with ctx.vms.lock(migration.vm_id):
            vm = ctx.store.get_vm(migration.vm_id)
            failover = vm is not None and taken_by_failover(vm, migration)
            if vm is not None and not failover:
                ctx.vms.record(moved_to_destination(vm, migration, target, taken, release=False))
        if failover:
            # The failover restarts the VM from what was taken over (its lease is newer).
            return await self.leave_to_failover(migration)
        migration = ctx.save(migration, phase=MigrationPhase.TAKEN_OVER)
        ctx.crash_points.reach(crash_points.QUICK_TAKEN_OVER)
        problem = ""
        if migration.vm_state_before in HOLDS_MEMORY and taken.state is VmState.SAVED:
            job.progress(70, f"Restoring VM {migration.vm_name} on {target.name}")
            try:
                taken = await self._restore(target, migration)
            except ManagerError as error:
                problem = f"it could not be restored there: {error.message}"
                taken = await ctx.ask(target.name, migration.vm_id) or taken
        migration = ctx.save(migration, phase=MigrationPhase.RESTORED)
        source = ctx.store.get_host(migration.source)
        if source is not None and source.address:
            try:
                # The source's copy is fenced by the newer lease; the agent keeps the files.
                await ctx.agents.delete_vm(source.name, source.address, migration.vm_id)
            except NotFoundError:
                pass  # the source let its fenced copy go already
            except ManagerError as error:
                log.info("host %s kept its copy of VM %s: %s", source.name, migration.vm_name, error.message)
        async with ctx.vms.lock(migration.vm_id):
            vm = ctx.store.get_vm(migration.vm_id)
            if vm is not None:
                ctx.vms.record(as_reported(vm, taken))
        down = migration.down_at if migration.vm_state_before in HOLDS_MEMORY else None
        done = ctx.save(
            migration,
            state=MigrationState.COMPLETED,
            phase=MigrationPhase.COMPLETED,
            error=problem,
            duration_ms=ctx.elapsed_ms(migration.started_at or migration.created_at),
            blackout_ms=ctx.elapsed_ms(down),
        )
        fallback = " (fell back from live migration)" if done.fell_back_to_quick else ""
        summary = f"VM {done.vm_name} moved to {done.destination} by quick migration{fallback}"
        if problem:
            summary += f", but {problem}"
        ctx.emit(done, summary)
        if problem:
            raise MigrationFailed(summary)
        return summary

    async def _restore(self, host: HostRecord, migration: MigrationRecord) -> ReportedVm:
        """Restore the saved VM on `host`, and pause it again if it was paused."""
        agents = self._ctx.agents
        reported = await agents.operate_vm(
            host.name, host.address or "", migration.vm_id, VmOperation.RESTORE
        )
        if migration.vm_state_before is VmState.PAUSED:
            reported = await agents.operate_vm(
                host.name, host.address or "", migration.vm_id, VmOperation.PAUSE
            )
        return reported

    async def back(self, migration: MigrationRecord, error: str) -> str:
        """Nothing moved: the source restores what it saved; the VM stays there."""
        ctx = self._ctx
        source = ctx.store.get_host(migration.source)
        report = await ctx.ask(migration.source, migration.vm_id)
        if (
            source is not None
            and source.address
            and report is not None
            and report.state is VmState.SAVED
            and migration.vm_state_before in HOLDS_MEMORY
        ):
            try:
                report = await self._restore(source, migration)
            except ManagerError as restore_error:
                error += f"; restoring it on {migration.source} failed too: {restore_error.message}"
                report = await ctx.ask(migration.source, migration.vm_id)
        outcome = Outcome.STAYED if report is not None else Outcome.UNKNOWN
        return await conclude(ctx, migration, outcome, report, None, error)

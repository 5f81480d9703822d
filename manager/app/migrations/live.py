"""Live migration: the source agent streams the running VM to the destination agent.

The manager takes a slot on both hosts, marks the VM migrating, orders the source to
migrate and mirrors the progress it reports into the migration's record. Memory bytes
never pass through the manager. When the progress stream breaks or falls silent, the
migration is not necessarily over: the source is asked to be followed again by the
migration's id, and only when it cannot say do the agents' reports settle where the VM
is. A live migration that cannot converge falls back to a quick one if the policy says so.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

from manager.app import crash_points
from manager.app.jobs import JobHandle
from manager.app.migrations.context import HOLDS_MEMORY, MigrationContext, MigrationFailed, slot_of
from manager.app.migrations.endings import conclude
from manager.app.migrations.quick import QuickMigration
from manager.app.migrations.slots import LiveMigrationSlots
from manager.core.errors import (
    DeadlineExceededError,
    FailedPreconditionError,
    ManagerError,
    MigrationFailure,
    NotFoundError,
)
from manager.core.migration import progress_message, progress_percent, settle, still_moving
from manager.core.migration_outcome import moved_to_destination
from manager.core.migration_phase import MigrationPhase
from manager.core.model import (
    LiveMigrationOrder,
    MigrationKind,
    MigrationProgress,
    MigrationRecord,
    VmRecord,
)
from manager.core.reconcile import record_observed, set_vm_state
from manager.core.states import MigrationState, VmState

log = logging.getLogger(__name__)


def falls_back(migration: MigrationRecord, failure: MigrationFailure | None) -> bool:
    """Whether a live migration that failed so becomes a quick one: it did not converge
    and its policy says to fall back."""
    return (
        migration.kind is MigrationKind.LIVE
        and failure is MigrationFailure.NOT_CONVERGED
        and migration.no_converge == "quick"
    )


class LiveMigration:
    def __init__(self, ctx: MigrationContext, slots: LiveMigrationSlots, quick: QuickMigration) -> None:
        self._ctx = ctx
        self._slots = slots
        self._quick = quick

    async def run(self, job: JobHandle, migration: MigrationRecord) -> str:
        slot = slot_of(migration)
        job.progress(
            1, f"Waiting for a live migration slot on {migration.source} and {migration.destination}"
        )
        await self._slots.take(slot)
        try:
            try:
                migration = self._ctx.start(migration)
                vm = await self._enter(migration)
                migration, progress = await self._stream_or_follow(job, migration, vm)
                return await self.done(migration, progress)
            except ManagerError as error:
                failed_with, failure = error.message, error.migration_failure
            except Exception as error:
                # Settled like any failure: the agents say where the VM is.
                log.exception("live migration %s crashed", migration.id)
                failed_with, failure = f"internal error: {error!r}", None
            if not falls_back(migration, failure):
                # Within the slot: the agents may still be migrating.
                return await self._failed(migration, failed_with)
        finally:
            await self._slots.release(slot)
        return await self.fall_back(job, self._ctx.get(migration.id), failed_with)

    async def _enter(self, migration: MigrationRecord) -> VmRecord:
        async with self._ctx.vms.lock(migration.vm_id):
            vm = self._ctx.store.get_vm(migration.vm_id)
            if vm is None:
                raise NotFoundError(f"VM {migration.vm_name} was deleted")
            if vm.host != migration.source or vm.state is not VmState.RUNNING:
                raise FailedPreconditionError(
                    f"VM {vm.name} is {vm.state.value} on {vm.host}: a live migration moves a running VM"
                )
            vm = set_vm_state(vm, VmState.MIGRATING, "")
            self._ctx.vms.record(vm)
            return vm

    def _order(self, migration: MigrationRecord, vm: VmRecord, reattach: bool) -> LiveMigrationOrder:
        if reattach:
            # Only the id: an agent that did not know the flag refuses this as a new
            # migration (no destination) rather than starting one.
            return LiveMigrationOrder(vm.id, migration.id, "", "", 0, 0, 0, 0.0, reattach=True)
        target = self._ctx.host(migration.destination)
        policy = self._ctx.policy
        return LiveMigrationOrder(
            vm_id=vm.id,
            migration_id=migration.id,
            destination_host=target.name,
            destination_address=target.migration_address or target.address or "",
            lease_generation=migration.lease_generation,
            max_passes=policy.max_passes,
            blackout_budget_ms=policy.blackout_budget_ms,
            bandwidth_mb_per_s=policy.bandwidth_mb_per_s,
            storage=migration.storage,
        )

    async def _stream(
        self, job: JobHandle, migration: MigrationRecord, vm: VmRecord, reattach: bool = False
    ) -> tuple[MigrationRecord, MigrationProgress]:
        """Mirror the source's progress into the record until the VM resumed on the
        destination; the record is written at each phase change and every progress
        interval, not at every message."""
        ctx = self._ctx
        source = ctx.host(migration.source)
        target = ctx.host(migration.destination)
        order = self._order(migration, vm, reattach)
        memory_bytes = vm.memory_mb * 1024 * 1024
        stall = ctx.policy.stall_timeout_s
        stream = ctx.agents.migrate_vm(source.name, source.address or "", order)
        written_at = ctx.monotonic()
        try:
            while True:
                try:
                    progress = await asyncio.wait_for(anext(stream), stall)
                except StopAsyncIteration:
                    raise MigrationFailed(
                        f"host {source.name} ended the migration stream before VM {vm.name} resumed on "
                        f"{target.name}"
                    ) from None
                except TimeoutError:
                    raise DeadlineExceededError(
                        f"host {source.name} sent nothing about the migration for {stall:g} s"
                    ) from None
                # A phase this manager does not know (a newer agent) leaves the recorded one.
                phase = progress.phase or migration.phase
                migration = replace(
                    migration,
                    passes=progress.passes,
                    bytes_sent=progress.bytes_sent,
                    bytes_remaining=progress.bytes_remaining,
                    mb_per_s=progress.mb_per_s,
                )
                job.progress(progress_percent(progress, memory_bytes), progress_message(progress))
                if phase is MigrationPhase.COMPLETED:
                    return migration, progress  # `done` records the phase with the move
                if phase is not migration.phase or (
                    ctx.monotonic() - written_at >= ctx.settings.migration_progress_interval_s
                ):
                    migration = ctx.save(migration, phase=phase)
                    written_at = ctx.monotonic()
                if phase is MigrationPhase.PRE_COPY and progress.bytes_sent > 0:
                    ctx.crash_points.reach(crash_points.LIVE_PRE_COPY)
                elif phase is MigrationPhase.BLACKOUT:
                    ctx.crash_points.reach(crash_points.LIVE_BLACKOUT)
        finally:
            await stream.aclose()

    async def _stream_or_follow(
        self, job: JobHandle, migration: MigrationRecord, vm: VmRecord
    ) -> tuple[MigrationRecord, MigrationProgress]:
        try:
            return await self._stream(job, migration, vm)
        except ManagerError as error:
            # The stream broke or fell silent, not necessarily the migration.
            followed = await self.follow_again(job, migration, vm)
            if isinstance(followed, tuple):
                return followed
            if followed is not None:
                raise MigrationFailed(followed.message, followed.migration_failure) from None
            raise error from None

    async def follow_again(
        self, job: JobHandle, migration: MigrationRecord, vm: VmRecord
    ) -> tuple[MigrationRecord, MigrationProgress] | ManagerError | None:
        """Follow a migration on its source again by its id, after its progress stream
        broke or fell silent: the record and final progress if it completed, the
        source's own error (its sentence, its kind of failure) if it failed, None if the
        source cannot say."""
        try:
            return await self._stream(job, self._ctx.get(migration.id), vm, reattach=True)
        except (NotFoundError, DeadlineExceededError) as error:
            log.info("migration %s: %s cannot say how it ended: %s", migration.id, migration.source, error)
            return None
        except ManagerError as error:
            return error
        except Exception:
            log.exception("migration %s: following it on %s failed", migration.id, migration.source)
            return None

    async def done(
        self, migration: MigrationRecord, progress: MigrationProgress, after_restart: bool = False
    ) -> str:
        """The destination resumed the VM: record it there and complete the migration."""
        ctx = self._ctx
        target = ctx.host(migration.destination)
        async with ctx.vms.lock(migration.vm_id):
            vm = ctx.store.get_vm(migration.vm_id)
            if vm is not None:
                ctx.vms.record(moved_to_destination(vm, migration, target, progress.vm))
        done = ctx.save(
            migration,
            state=MigrationState.COMPLETED,
            phase=MigrationPhase.COMPLETED,
            duration_ms=progress.duration_ms,
            blackout_ms=progress.blackout_ms,
            memory_digest=progress.memory_digest,
            resumed_digest=progress.resumed_digest,
            bytes_remaining=0,
        )
        summary = (
            f"VM {done.vm_name} moved live to {done.destination}: {done.bytes_sent / 1e6:.1f} MB in "
            f"{done.passes} pass(es), {done.duration_ms} ms, blackout {done.blackout_ms} ms"
        )
        if after_restart:
            summary += " (followed across a manager restart)"
        ctx.emit(done, summary)
        return summary

    async def _failed(self, migration: MigrationRecord, error: str) -> str:
        """The stream failed: record where the VM truly is, then fail (or complete)."""
        ctx = self._ctx
        migration = ctx.get(migration.id)  # with the last progress it wrote
        # The manager's stream may have given up while the agents go on (a stalled
        # stream, a deadline): what they end with decides, not what they say now.
        source_report, source_answered = await ctx.watch_source(
            migration, lambda report: still_moving(report, migration.id)
        )
        target_report = None
        if source_report is None or source_report.state not in HOLDS_MEMORY:
            target_report = await ctx.ask(migration.destination, migration.vm_id)
        outcome = settle(
            source_report, target_report, migration.lease_generation, source_let_go=source_answered
        )
        return await conclude(ctx, migration, outcome, source_report, target_report, error)

    async def fall_back(self, job: JobHandle, migration: MigrationRecord, error: str) -> str:
        """A live migration that cannot converge becomes a quick one (the policy says so)."""
        ctx = self._ctx
        ctx.emit(
            migration, f"live migration of VM {migration.vm_name} {error}: falling back to quick migration"
        )
        report = await ctx.ask(migration.source, migration.vm_id)
        async with ctx.vms.lock(migration.vm_id):
            vm = ctx.store.get_vm(migration.vm_id)
            if vm is not None and report is not None:
                ctx.vms.record(record_observed(vm, report.state, report.reason))
        migration = ctx.save(migration, fell_back_to_quick=True, phase=MigrationPhase.QUICK)
        return await self._quick.run(job, migration)

"""Settling the migrations a previous manager left behind.

Every migration is persisted with its step written before the step is acted on. On
load, a migration still queued never began and fails at once; a running one keeps its
VM (and, if the agents may still be migrating, its hosts' live-migration slots) until
the agents can be asked where the VM is. Its job, kept running across the restart,
ends with the outcome rather than as interrupted.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

from manager.app.claims import Claim
from manager.app.jobs import JobBook, JobHandle
from manager.app.migrations.context import IN_TRANSIT, MigrationContext, MigrationFailed, runs_live, slot_of
from manager.app.migrations.endings import abandon, conclude
from manager.app.migrations.live import LiveMigration, falls_back
from manager.app.migrations.quick import QuickMigration
from manager.app.migrations.slots import LiveMigrationSlots
from manager.app.migrations.transfer import Transfers
from manager.core.errors import ManagerError, NotFoundError
from manager.core.migration import Outcome, holds_new_lease, is_open, settle, still_moving
from manager.core.migration_phase import MigrationPhase
from manager.core.model import MigrationKind, MigrationRecord
from manager.core.reconcile import record_observed
from manager.core.states import JobState, MigrationState

log = logging.getLogger(__name__)

RESTARTED_BEFORE = "the manager restarted before it began"
# How many of the newest migrations are read at start-up for jobs a restart caught just
# after their migration ended (see concluded_jobs).
RECENT_MIGRATIONS = 1000
OPEN_STATES = frozenset({MigrationState.QUEUED, MigrationState.RUNNING})


class Recovery:
    def __init__(
        self,
        ctx: MigrationContext,
        jobs: JobBook,
        slots: LiveMigrationSlots,
        live: LiveMigration,
        quick: QuickMigration,
        transfers: Transfers,
    ) -> None:
        self._ctx = ctx
        self._jobs = jobs
        self._slots = slots
        self._live = live
        self._quick = quick
        self._transfers = transfers
        self._to_recover: list[str] = []

    def settle_queued(self) -> None:
        """On load: a queued migration never began; a running one is settled once the
        agents can be asked (`recover`). Its VM stays out of refresh until then."""
        ctx = self._ctx
        self._to_recover = []
        for migration in ctx.store.list_migrations(1_000_000, OPEN_STATES):
            if migration.state is MigrationState.QUEUED:
                failed = ctx.save(migration, state=MigrationState.FAILED, error=RESTARTED_BEFORE)
                vm = ctx.store.get_vm(migration.vm_id)
                if vm is not None:
                    ctx.release_vm(vm, migration)
                ctx.emit(failed, f"migration of VM {failed.vm_name} failed: {RESTARTED_BEFORE}")
                continue
            ctx.vms.claims.claim(migration.vm_id, Claim.MIGRATION)
            self._to_recover.append(migration.id)
            if runs_live(migration):
                # Its agents may still be migrating: it holds its hosts' slots until settled.
                self._slots.hold(slot_of(migration))

    def jobs_being_settled(self) -> set[str]:
        """The jobs of the migrations `recover` will settle: they end when it does, with
        the migration's outcome, rather than as interrupted."""
        jobs = (self._ctx.store.get_migration(mid) for mid in self._to_recover)
        return {m.job_id for m in jobs if m is not None and m.job_id}

    def concluded_jobs(self) -> dict[str, tuple[JobState, str]]:
        """Jobs whose migration ended but which a restart caught before they did: what
        they end with (state, and the message or error), rather than as interrupted.
        Such a job's migration is among the newest, so only those are read."""
        ended: dict[str, tuple[JobState, str]] = {}
        for migration in self._ctx.store.list_migrations(RECENT_MIGRATIONS):
            if not migration.job_id or is_open(migration):
                continue
            if migration.state is MigrationState.COMPLETED:
                ended[migration.job_id] = (
                    JobState.COMPLETED,
                    f"VM {migration.vm_name} moved to {migration.destination}",
                )
            else:
                ended[migration.job_id] = (JobState.FAILED, migration.error or "the migration failed")
        return ended

    async def recover(self) -> None:
        """Settle every migration a previous manager left running, from what agents say."""
        ids, self._to_recover = self._to_recover, []
        await asyncio.gather(*(self._recover_one(mid) for mid in ids))

    async def _recover_one(self, migration_id: str) -> None:
        """Settle one migration; its job (kept running across the restart) ends with
        the outcome."""
        ctx = self._ctx
        migration = ctx.get(migration_id)
        job: JobHandle = _NoJob()
        try:
            if migration.job_id:
                try:
                    job = self._jobs.adopt(migration.job_id)
                except NotFoundError:
                    log.warning("migration %s: its job %s is gone", migration_id, migration.job_id)
            async with ctx.vms.lock(migration.vm_id):
                pass  # a job of this process that still holds the VM goes first
            job.progress(0, f"Settling the migration of VM {migration.vm_name} after a manager restart")
            if migration.kind in (MigrationKind.SAN_TRANSFER, MigrationKind.NETWORK_TRANSFER):
                summary = await self._transfers.recover(job, migration)
            elif migration.kind is MigrationKind.QUICK or migration.fell_back_to_quick:
                summary = await self._recover_quick(job, migration)
            elif migration.source == migration.destination:
                summary = await self._recover_files(migration)
            else:
                summary = await self._recover_live(job, migration)
        except MigrationFailed as failure:
            job.end(failure.message)  # recorded as failed, with its reason
        except Exception as error:
            # The migration ends (failed) before its job does, and lets go of its VM,
            # whose next refresh records where the agents have it. (abandon logs a bug.)
            await abandon(ctx, migration_id, error)
            why = error.message if isinstance(error, ManagerError) else f"internal error: {error!r}"
            job.end(f"the migration could not be settled after the manager restarted: {why}")
        else:
            job.end(None, summary)
        finally:
            ctx.vms.claims.release(migration.vm_id, Claim.MIGRATION)
            await self._slots.release(slot_of(migration))

    async def _recover_live(self, job: JobHandle, migration: MigrationRecord) -> str:
        ctx = self._ctx
        restarted = "the manager restarted during the migration"
        vm = ctx.store.get_vm(migration.vm_id)
        if vm is not None:
            # The source runs the migration whoever listens, and remembers how recent
            # ones ended: following it again by its id brings the figures too.
            followed = await self._live.follow_again(job, migration, vm)
            if isinstance(followed, tuple):
                return await self._live.done(*followed, after_restart=True)
            migration = ctx.get(migration.id)
            if followed is not None:
                restarted = f"{restarted}: {followed.message}"  # the agents' own reason
                if falls_back(migration, followed.migration_failure):
                    await self._slots.release(slot_of(migration))
                    return await self._live.fall_back(job, migration, followed.message)
        source_report, source_answered = await ctx.watch_source(
            migration, lambda report: still_moving(report, migration.id)
        )
        target_report = await ctx.ask(migration.destination, migration.vm_id)
        outcome = settle(
            source_report, target_report, migration.lease_generation, source_let_go=source_answered
        )
        return await conclude(ctx, migration, outcome, source_report, target_report, restarted)

    async def _recover_quick(self, job: JobHandle, migration: MigrationRecord) -> str:
        ctx = self._ctx
        if migration.phase is MigrationPhase.SAVING:
            # The source may still be saving: what it ends with decides.
            await ctx.watch_source(
                migration, lambda report: report is not None and report.state in IN_TRANSIT
            )
        taken = await ctx.ask(migration.destination, migration.vm_id)
        if holds_new_lease(taken, migration.lease_generation):
            assert taken is not None
            return await self._quick.forward(job, migration, taken)
        return await self._quick.back(migration, "the manager restarted during the quick migration")

    async def _recover_files(self, migration: MigrationRecord) -> str:
        """Where the files are after a restart cut a storage move on one host short: the
        host says."""
        ctx = self._ctx
        report = await ctx.ask(migration.source, migration.vm_id)
        if report is not None and migration.storage is not None and report.storage == migration.storage:
            async with ctx.vms.lock(migration.vm_id):
                vm = ctx.store.get_vm(migration.vm_id)
                if vm is not None:
                    ctx.vms.record(
                        replace(
                            record_observed(vm, report.state, report.reason),
                            storage=report.storage,
                            migration_id=None,
                        )
                    )
            done = ctx.save(migration, state=MigrationState.COMPLETED, phase=MigrationPhase.COMPLETED)
            summary = f"files of VM {done.vm_name} are on {report.storage.name} (settled after a restart)"
            ctx.emit(done, summary)
            return summary
        return await conclude(
            ctx,
            migration,
            Outcome.STAYED if report else Outcome.UNKNOWN,
            report,
            None,
            "the manager restarted during the storage migration",
        )


class _NoJob(JobHandle):
    """A migration recorded without a job (none in this version): progress and the end
    go nowhere."""

    def __init__(self) -> None:
        self.id = ""

    def progress(self, percent: int, message: str) -> None:
        del percent, message

    def end(self, error: str | None, summary: str = "") -> None:
        del error, summary

"""Moving VMs between hosts: live, quick and storage migration, orchestrated, never relayed.

The manager checks a move at once (the VM, both hosts, the destination's own
compatibility verdict) and then runs it as a job. A live migration waits for a slot
on both hosts, asks the source agent to stream the VM to the destination agent, and
mirrors the progress it reports; memory bytes flow agent to agent. A quick migration
saves, moves ownership with a newer lease, and restores. Every migration is a
persisted record whose step is written before it is acted on, so that a manager
restarted mid-way settles it from what the agents report.

A migration holds the VM's lock only for the short moments it reads or writes the
VM's record, never while bytes flow: the failover of a host that fails mid-migration
must be able to take the VM at once.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from manager.app import crash_points
from manager.app.claims import Claim
from manager.app.crash_points import CrashPoints
from manager.app.events import EventBus
from manager.app.host_memory import settle_host_memory
from manager.app.jobs import JobBook, JobHandle
from manager.app.vms import VmService
from manager.core.agent_port import AgentPort
from manager.core.errors import (
    AlreadyExistsError,
    DeadlineExceededError,
    FailedPreconditionError,
    InvalidArgumentError,
    ManagerError,
    MigrationFailure,
    NotFoundError,
)
from manager.core.inventory import host_capacity
from manager.core.migration import (
    MOVABLE_STATES,
    STEP_RESTORED,
    STEP_SAVED,
    STEP_SAVING,
    STEP_TAKEN_OVER,
    STEP_TAKING_OVER,
    Outcome,
    SlotRequest,
    admit,
    check_destination,
    check_ha_fits,
    check_host_ok,
    check_same_cluster,
    check_vm_movable,
    choose_kind,
    choose_storage,
    holds_new_lease,
    is_open,
    progress_message,
    progress_percent,
    refusal,
    settle,
    still_moving,
    taken_by_failover,
)
from manager.core.model import (
    HostRecord,
    JobRecord,
    LiveMigrationOrder,
    MigrationKind,
    MigrationProgress,
    MigrationRecord,
    ReportedVm,
    RestartPriority,
    StorageLocation,
    VmOperation,
    VmRecord,
)
from manager.core.profiles import live_migrates
from manager.core.reconcile import record_observed, set_vm_state, with_configuration
from manager.core.settings import Settings
from manager.core.states import HostState, JobState, MigrationState, VmState, change_migration_state
from manager.core.store import Store
from manager.core.topology import MigrationSettings

log = logging.getLogger(__name__)

RESTARTED_BEFORE = "the manager restarted before it began"
# How many of the newest migrations are read at start-up for jobs a restart caught just
# after their migration ended (see concluded_jobs).
RECENT_MIGRATIONS = 1000
OPEN_STATES = frozenset({MigrationState.QUEUED, MigrationState.RUNNING})
HOLDS_MEMORY = frozenset({VmState.RUNNING, VmState.PAUSED})
# States in which a VM surely holds no memory: a quick migration moves it without saving.
AT_REST = frozenset({VmState.SAVED, VmState.STOPPED})
# States a save or a restore passes through on the way to its end.
IN_TRANSIT = frozenset({VmState.SAVING, VmState.STARTING})
# Hosts whose failover already collected the VMs recorded on them.
FAILING_OVER = frozenset({HostState.FENCING, HostState.FENCED})


class MigrationFailed(ManagerError):
    """A migration ended without moving the VM; the message says why and where it is."""

    code = "ABORTED"


class MigrationService:
    def __init__(
        self,
        store: Store,
        agents: AgentPort,
        jobs: JobBook,
        vms: VmService,
        settings: Settings,
        bus: EventBus,
        clock: Callable[[], datetime],
        monotonic: Callable[[], float],
        crash_at: CrashPoints | None = None,
    ) -> None:
        self._store = store
        self._agents = agents
        self._jobs = jobs
        self._vms = vms
        self._settings = settings
        self._bus = bus
        self._clock = clock
        self._monotonic = monotonic
        # The topology's `migration:` section; set when the topology is loaded.
        self.policy = MigrationSettings()
        self._waiting: list[SlotRequest] = []
        self._running: dict[str, SlotRequest] = {}
        self._slots_changed = asyncio.Condition()
        self._to_recover: list[str] = []
        self._crash_points = crash_at or CrashPoints(None)

    # --- reads ---------------------------------------------------------------------

    def get(self, migration_id: str) -> MigrationRecord:
        migration = self._store.get_migration(migration_id)
        if migration is None:
            raise NotFoundError(f"migration {migration_id} does not exist")
        return migration

    def list(self, limit: int = 0) -> list[MigrationRecord]:
        if limit < 0:
            raise InvalidArgumentError(f"limit: must not be negative, got {limit}")
        return self._store.list_migrations(limit or self._settings.migrations_list_default)

    # --- requests ------------------------------------------------------------------

    async def migrate(
        self, name: str, destination: str, quick: bool, no_converge: str | None
    ) -> tuple[JobRecord, MigrationRecord]:
        """Live or quick migration to another node of the VM's cluster."""
        vm = self._vm(name)
        check_vm_movable(vm)
        source, target = self._hosts(vm, destination)
        check_ha_fits(vm, target)
        check_same_cluster(vm, source, target)
        kind = choose_kind(self._profile(source), vm.state, quick)
        await self._check_compatibility(vm, source, target, vm.storage)
        return self._begin(vm, source, target, kind, None, no_converge or self.policy.no_converge)

    async def migrate_storage(
        self, name: str, destination: str, storage: StorageLocation | None
    ) -> tuple[JobRecord, MigrationRecord]:
        """Move the VM's files on its host, or to another host together with the VM."""
        vm = self._vm(name)
        here = check_vm_movable(vm)
        if not destination or destination == here:
            if storage is None:
                raise InvalidArgumentError("storage: must say where the files go when the host stays")
            if storage == vm.storage:
                raise FailedPreconditionError(f"VM {vm.name}'s files already are on {storage.name}")
            source = self._store.get_host(here)
            if source is None:
                raise FailedPreconditionError(f"VM {vm.name} is on host {here}, which no longer exists")
            check_host_ok(vm, source, "its")
            return self._begin(vm, source, source, MigrationKind.STORAGE, storage, "fail")
        source, target = self._hosts(vm, destination)
        check_ha_fits(vm, target)
        for host in (source, target):
            if not live_migrates(self._profile(host)):
                raise FailedPreconditionError(
                    f"VM {vm.name} cannot move its files from {source.name} to {target.name} while it "
                    f"runs: host {host.name} runs {self._profile(host)}, which has no live migration"
                )
        if vm.state is not VmState.RUNNING:
            raise FailedPreconditionError(
                f"VM {vm.name} is {vm.state.value}: a storage migration to another host moves a running "
                "VM (start it first)"
            )
        if storage is None:
            capacity = host_capacity(target, self._store.list_clusters(), self._store.list_vms())
            storage = choose_storage(capacity, vm)
            if storage is None:
                raise FailedPreconditionError(
                    f"VM {vm.name} cannot move to {target.name}: it sees no storage with {vm.disk_gb} GB free"
                )
        await self._check_compatibility(vm, source, target, storage)
        return self._begin(vm, source, target, MigrationKind.STORAGE, storage, "fail")

    def _vm(self, name: str) -> VmRecord:
        vm = self._store.get_vm_by_name(name)
        if vm is None:
            raise NotFoundError(f"VM {name} does not exist")
        return vm

    def _hosts(self, vm: VmRecord, destination: str) -> tuple[HostRecord, HostRecord]:
        source = self._store.get_host(vm.host or "")
        target = self._store.get_host(destination) if destination else None
        check_destination(vm, source, target, destination)
        assert source is not None and target is not None
        return source, target

    def _profile(self, host: HostRecord) -> str:
        cluster = self._store.get_cluster(host.cluster) if host.cluster else None
        return cluster.profile if cluster is not None else host.profile

    async def _check_compatibility(
        self, vm: VmRecord, source: HostRecord, target: HostRecord, storage: StorageLocation | None
    ) -> None:
        """The destination's verdict, with the processor the running guest sees."""
        vendor, features = "", ()
        if vm.state is not VmState.STOPPED:
            try:
                report = await self._agents.get_vm(source.name, source.address or "", vm.id)
            except ManagerError as error:
                raise type(error)(
                    f"host {source.name} could not describe VM {vm.name}: {error.message}"
                ) from None
            vendor, features = report.cpu_vendor, report.cpu_features
        try:
            reasons = await self._agents.check_compatibility(
                target.name, target.address or "", replace(vm, storage=storage), vendor, features
            )
        except ManagerError as error:
            raise type(error)(
                f"host {target.name} could not check whether it can take VM {vm.name}: {error.message}"
            ) from None
        if reasons:
            raise refusal(vm, target.name, reasons)

    def _begin(
        self,
        vm: VmRecord,
        source: HostRecord,
        target: HostRecord,
        kind: MigrationKind,
        storage: StorageLocation | None,
        no_converge: str,
    ) -> tuple[JobRecord, MigrationRecord]:
        # The compatibility check awaited: look again before taking the VM.
        vm = self._vm(vm.name)
        check_vm_movable(vm)
        if vm.host != source.name:
            raise FailedPreconditionError(f"VM {vm.name} moved to {vm.host} meanwhile")
        now = self._clock()
        migration = MigrationRecord(
            id=str(uuid.uuid4()),
            vm_id=vm.id,
            vm_name=vm.name,
            kind=kind,
            state=MigrationState.QUEUED,
            source=source.name,
            destination=target.name,
            created_at=now,
            updated_at=now,
            storage=storage,
            lease_generation=vm.lease_generation + 1,
            vm_state_before=vm.state,
            no_converge=no_converge,
        )
        self._store.put_migration(migration)
        self._vms.record(replace(vm, migration_id=migration.id))
        self._vms.claims.claim(vm.id, Claim.MIGRATION)
        where = f"{source.name} to {target.name}" if source.name != target.name else f"on {source.name}"
        label = "storage" if kind is MigrationKind.STORAGE else kind.value
        try:
            job = self._jobs.start(
                "migrate_vm_storage" if kind is MigrationKind.STORAGE else "migrate_vm",
                vm.name,
                f"Waiting to migrate VM {vm.name} {where}",
                lambda handle: self._work(handle, migration.id),
                # A manager stopping mid-migration leaves the job to the next one's settling.
                resumable=True,
            )
        except BaseException:
            self._vms.claims.release(vm.id, Claim.MIGRATION)
            self._vms.record(replace(vm, migration_id=None))
            raise
        migration = replace(migration, job_id=job.id)
        self._store.put_migration(migration)
        self._emit(migration, f"{label} migration of VM {vm.name} {where} requested")
        return job, migration

    # --- the job ---------------------------------------------------------------------

    async def _work(self, job: JobHandle, migration_id: str) -> str:
        migration = self.get(migration_id)
        try:
            if migration.kind is MigrationKind.QUICK:
                summary = await self._quick(job, self._start(migration))
            elif migration.source == migration.destination:
                summary = await self._move_files(job, self._start(migration))
            else:
                summary = await self._live(job, migration)
        except Exception as error:
            # Whatever escaped, the migration ends and lets go of its VM; a cancelled
            # job (the manager stops) is left to the settling after the restart.
            await self._abandon(migration_id, error)
            await self._settle_memory(migration)
            raise
        finally:
            self._vms.claims.release(migration.vm_id, Claim.MIGRATION)
        await self._settle_memory(migration)
        return summary

    async def _settle_memory(self, migration: MigrationRecord) -> None:
        """Both hosts' free memory as their agents see it now that the VM moved or stayed."""
        for host in dict.fromkeys((migration.source, migration.destination)):
            await settle_host_memory(self._store, self._agents, host)

    async def _abandon(self, migration_id: str, error: Exception) -> None:
        migration = self._store.get_migration(migration_id)
        if migration is None or not is_open(migration):
            return
        if isinstance(error, ManagerError):
            why = error.message
        else:
            log.error("migration %s crashed", migration_id, exc_info=error)
            why = f"internal error: {error!r}"
        async with self._vms.lock(migration.vm_id):
            vm = self._store.get_vm(migration.vm_id)
            if vm is not None:
                self._release_vm(vm, migration)
        failed = self._save(migration, state=MigrationState.FAILED, error=why)
        self._emit(failed, f"migration of VM {failed.vm_name} to {failed.destination} failed: {why}")

    def _start(self, migration: MigrationRecord) -> MigrationRecord:
        started = self._save(migration, state=MigrationState.RUNNING, phase="preparing")
        self._emit(started, f"migration of VM {started.vm_name} started")
        return started

    async def _live(self, job: JobHandle, migration: MigrationRecord) -> str:
        slot = _slot(migration)
        job.progress(
            1, f"Waiting for a live migration slot on {migration.source} and {migration.destination}"
        )
        await self._take_slot(slot)
        try:
            try:
                migration = self._start(migration)
                vm = await self._enter_live(migration)
                migration, progress = await self._stream_or_follow(job, migration, vm)
                return await self._live_done(migration, progress)
            except ManagerError as error:
                failed_with, failure = error.message, error.migration_failure
            except Exception as error:
                # Settled like any failure: the agents say where the VM is.
                log.exception("live migration %s crashed", migration.id)
                failed_with, failure = f"internal error: {error!r}", None
            if not (
                migration.kind is MigrationKind.LIVE
                and failure is MigrationFailure.NOT_CONVERGED
                and migration.no_converge == "quick"
            ):
                # Within the slot: the agents may still be migrating.
                return await self._live_failed(migration, failed_with)
        finally:
            await self._release_slot(slot)
        return await self._fall_back(job, self.get(migration.id), failed_with)

    async def _enter_live(self, migration: MigrationRecord) -> VmRecord:
        async with self._vms.lock(migration.vm_id):
            vm = self._store.get_vm(migration.vm_id)
            if vm is None:
                raise NotFoundError(f"VM {migration.vm_name} was deleted")
            if vm.host != migration.source or vm.state is not VmState.RUNNING:
                raise FailedPreconditionError(
                    f"VM {vm.name} is {vm.state.value} on {vm.host}: a live migration moves a running VM"
                )
            vm = set_vm_state(vm, VmState.MIGRATING, "")
            self._vms.record(vm)
            return vm

    async def _stream(
        self, job: JobHandle, migration: MigrationRecord, vm: VmRecord, reattach: bool = False
    ) -> tuple[MigrationRecord, MigrationProgress]:
        source = self._host(migration.source)
        target = self._host(migration.destination)
        order = LiveMigrationOrder(
            vm_id=vm.id,
            migration_id=migration.id,
            destination_host=target.name,
            destination_address=target.migration_address or target.address or "",
            lease_generation=migration.lease_generation,
            max_passes=self.policy.max_passes,
            blackout_budget_ms=self.policy.blackout_budget_ms,
            bandwidth_mb_per_s=self.policy.bandwidth_mb_per_s,
            storage=migration.storage,
        )
        if reattach:
            # Only the id: an agent that did not know the flag refuses this as a new
            # migration (no destination) rather than starting one.
            order = LiveMigrationOrder(vm.id, migration.id, "", "", 0, 0, 0, 0.0, reattach=True)
        memory_bytes = vm.memory_mb * 1024 * 1024
        stall = self.policy.stall_timeout_s
        stream = self._agents.migrate_vm(source.name, source.address or "", order)
        written_at = self._monotonic()
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
                phase_changed = progress.phase != migration.phase
                migration = replace(
                    migration,
                    phase=progress.phase,
                    passes=progress.passes,
                    bytes_sent=progress.bytes_sent,
                    bytes_remaining=progress.bytes_remaining,
                    mb_per_s=progress.mb_per_s,
                )
                job.progress(progress_percent(progress, memory_bytes), progress_message(progress))
                if progress.phase == "completed":
                    return migration, progress
                if phase_changed or (
                    self._monotonic() - written_at >= self._settings.migration_progress_interval
                ):
                    migration = self._save(migration)
                    written_at = self._monotonic()
                if progress.phase == "pre_copy" and progress.bytes_sent > 0:
                    self._crash_points.reach(crash_points.LIVE_PRE_COPY)
                elif progress.phase == "blackout":
                    self._crash_points.reach(crash_points.LIVE_BLACKOUT)
        finally:
            await stream.aclose()

    async def _stream_or_follow(
        self, job: JobHandle, migration: MigrationRecord, vm: VmRecord
    ) -> tuple[MigrationRecord, MigrationProgress]:
        try:
            return await self._stream(job, migration, vm)
        except ManagerError as error:
            # The stream broke or fell silent, not necessarily the migration.
            followed = await self._follow_again(job, migration, vm)
            if isinstance(followed, tuple):
                return followed
            if followed is not None:
                raise MigrationFailed(followed.message, followed.migration_failure) from None
            raise error from None

    async def _follow_again(
        self, job: JobHandle, migration: MigrationRecord, vm: VmRecord
    ) -> tuple[MigrationRecord, MigrationProgress] | ManagerError | None:
        """Follow a migration on its source again by its id, after its progress stream
        broke or fell silent: the record and final progress if it completed, the
        source's own error (its sentence, its kind of failure) if it failed, None if the
        source cannot say."""
        try:
            return await self._stream(job, self.get(migration.id), vm, reattach=True)
        except (NotFoundError, DeadlineExceededError) as error:
            log.info("migration %s: %s cannot say how it ended: %s", migration.id, migration.source, error)
            return None
        except ManagerError as error:
            return error
        except Exception:
            log.exception("migration %s: following it on %s failed", migration.id, migration.source)
            return None

    async def _live_done(
        self, migration: MigrationRecord, progress: MigrationProgress, after_restart: bool = False
    ) -> str:
        target = self._host(migration.destination)
        report = progress.vm
        async with self._vms.lock(migration.vm_id):
            vm = self._store.get_vm(migration.vm_id)
            if vm is not None:
                self._move_record(vm, migration, target, report)
        done = self._save(
            migration,
            state=MigrationState.COMPLETED,
            phase="completed",
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
        self._emit(done, summary)
        return summary

    def _move_record(
        self,
        vm: VmRecord,
        migration: MigrationRecord,
        target: HostRecord,
        report: ReportedVm | None,
        release: bool = True,
    ) -> VmRecord:
        """The VM's record on the destination, holding the migration's lease; `release`
        ends the migration's hold on the VM."""
        moved = replace(
            vm,
            host=target.name,
            lease_generation=max(migration.lease_generation, report.lease_generation if report else 0),
            storage=(report.storage if report else None) or migration.storage or vm.storage,
            migration_id=None if release and vm.migration_id == migration.id else vm.migration_id,
        )
        state = report.state if report is not None else VmState.RUNNING
        moved = with_configuration(
            record_observed(moved, state, report.reason if report else ""), target.cluster
        )
        self._vms.record(moved)
        return moved

    async def _live_failed(self, migration: MigrationRecord, error: str) -> str:
        """The stream failed: record where the VM truly is, then fail (or complete)."""
        migration = self.get(migration.id)  # with the last progress it wrote
        # The manager's stream may have given up while the agents go on (a stalled
        # stream, a deadline): what they end with decides, not what they say now.
        source_report, source_answered = await self._watch_source(
            migration, lambda report: still_moving(report, migration.id)
        )
        target_report = None
        if source_report is None or source_report.state not in HOLDS_MEMORY:
            target_report = await self._ask(migration.destination, migration.vm_id)
        outcome = settle(
            source_report, target_report, migration.lease_generation, source_let_go=source_answered
        )
        return await self._conclude(migration, outcome, source_report, target_report, error)

    async def _conclude(
        self,
        migration: MigrationRecord,
        outcome: Outcome,
        source_report: ReportedVm | None,
        target_report: ReportedVm | None,
        error: str,
    ) -> str:
        async with self._vms.lock(migration.vm_id):
            vm = self._store.get_vm(migration.vm_id)
            failover = vm is not None and taken_by_failover(vm, migration)
            if vm is not None and failover:
                # The failover of a failed host took the VM: its record is the failover's.
                self._release_vm(vm, migration)
                outcome = Outcome.UNKNOWN
                error += f"; the failover of host {vm.failover_from or migration.source} took the VM"
            elif vm is not None:
                self._record_outcome(vm, migration, outcome, source_report, target_report)
        if outcome is Outcome.MOVED:
            done = self._save(migration, state=MigrationState.COMPLETED, phase="completed", error="")
            summary = (
                f"VM {done.vm_name} runs on {done.destination} (the migration ended unobserved: {error})"
            )
            self._emit(done, summary)
            return summary
        where = {
            Outcome.STAYED: f"it stays on {migration.source}",
            Outcome.HANDED_OVER: (
                f"host {migration.source} let it go, so it is recorded on {migration.destination} for "
                "that host's refresh or failover to settle"
            ),
            Outcome.UNKNOWN: f"it stays recorded on {migration.source} for the failover to settle",
        }[outcome]
        if failover:
            where = "the failover settles where it runs"
        failed = self._save(migration, state=MigrationState.FAILED, error=error)
        self._emit(
            failed, f"migration of VM {failed.vm_name} to {failed.destination} failed: {error}; {where}"
        )
        raise MigrationFailed(
            f"migration of VM {failed.vm_name} to {failed.destination} failed: {error}; {where}"
        )

    def _record_outcome(
        self,
        vm: VmRecord,
        migration: MigrationRecord,
        outcome: Outcome,
        source_report: ReportedVm | None,
        target_report: ReportedVm | None,
    ) -> None:
        """The VM's record where the migration left it; the caller holds the VM's lock."""
        if outcome is Outcome.MOVED:
            self._move_record(vm, migration, self._host(migration.destination), target_report)
        elif outcome is Outcome.STAYED and source_report is not None:
            self._vms.record(
                replace(record_observed(vm, source_report.state, source_report.reason), migration_id=None)
            )
        elif outcome is Outcome.HANDED_OVER:
            self._hand_over(vm, migration, target_report)
        else:
            reason = (
                f"host {migration.source} reports it {source_report.state.value} after the migration"
                if source_report is not None
                else f"host {migration.source} did not answer after the migration"
            )
            # The destination may hold the migration's lease: a take-over must be newer.
            self._vms.record(
                replace(
                    record_observed(vm, VmState.UNKNOWN, reason),
                    migration_id=None,
                    lease_generation=max(vm.lease_generation, migration.lease_generation),
                )
            )

    def _hand_over(self, vm: VmRecord, migration: MigrationRecord, report: ReportedVm | None) -> None:
        """The source let the VM go, so the lease moved: the VM is the destination's,
        whether or not that host confirms it. Its refresh records what it has; if it
        failed, its failover restarts the VM."""
        target = self._store.get_host(migration.destination)
        cluster = target.cluster if target is not None else None
        if report is not None:
            state, reason = report.state, report.reason
        else:
            state = VmState.UNKNOWN
            reason = f"host {migration.source} let it go to {migration.destination}, which did not confirm it"
        moved = replace(
            vm,
            host=migration.destination,
            lease_generation=max(
                vm.lease_generation, migration.lease_generation, report.lease_generation if report else 0
            ),
            storage=(report.storage if report else None) or migration.storage or vm.storage,
            migration_id=None,
        )
        moved = with_configuration(record_observed(moved, state, reason), cluster)
        if (
            target is not None
            and target.state in FAILING_OVER
            and cluster is not None
            and moved.highly_available
            and moved.restart_priority is not RestartPriority.NONE
        ):
            # That host's failover already collected the VMs recorded on it: this one
            # joins those it restarts.
            moved = replace(moved, failover_from=target.name)
        self._vms.record(moved)

    def _release_vm(self, vm: VmRecord, migration: MigrationRecord) -> None:
        """The migration lets go of the VM; a take-over after it must be newer than the
        lease the migration reserved, which its destination may hold."""
        released = replace(
            vm,
            migration_id=None if vm.migration_id == migration.id else vm.migration_id,
            lease_generation=max(vm.lease_generation, migration.lease_generation),
        )
        if released != vm:
            self._vms.record(released)

    async def _fall_back(self, job: JobHandle, migration: MigrationRecord, error: str) -> str:
        """A live migration that cannot converge becomes a quick one (the policy says so)."""
        self._emit(
            migration, f"live migration of VM {migration.vm_name} {error}: falling back to quick migration"
        )
        report = await self._ask(migration.source, migration.vm_id)
        async with self._vms.lock(migration.vm_id):
            vm = self._store.get_vm(migration.vm_id)
            if vm is not None and report is not None:
                self._vms.record(record_observed(vm, report.state, report.reason))
        migration = self._save(migration, fell_back_to_quick=True, phase="quick")
        return await self._quick(job, migration)

    # --- quick migration -------------------------------------------------------------

    async def _quick(self, job: JobHandle, migration: MigrationRecord) -> str:
        source = self._host(migration.source)
        target = self._host(migration.destination)
        async with self._vms.lock(migration.vm_id):
            vm = self._store.get_vm(migration.vm_id)
        if vm is None:
            raise NotFoundError(f"VM {migration.vm_name} was deleted")
        if taken_by_failover(vm, migration):
            return await self._leave_to_failover(migration)
        # A VM whose state is not known for sure (a live migration fell back, its source
        # did not answer) may still run: it is saved first, or the move stops.
        must_save = vm.state not in AT_REST
        if vm.state in MOVABLE_STATES:
            migration = self._save(migration, vm_state_before=vm.state)
        try:
            if must_save:
                migration = self._save(migration, phase=STEP_SAVING)
                job.progress(10, f"Saving VM {vm.name} on {source.name}")
                reported = await self._agents.operate_vm(
                    source.name, source.address or "", vm.id, VmOperation.SAVE
                )
                vm = self._observe(vm, reported)
                migration = self._save(migration, phase=STEP_SAVED)
                self._crash_points.reach(crash_points.QUICK_SAVED)
            migration = self._save(migration, phase=STEP_TAKING_OVER)
            job.progress(40, f"Moving VM {vm.name} to {target.name}")
            # Under the VM's lock: a failover that marked the VM meanwhile goes first,
            # and one that marks it now waits until this take-over is recorded.
            async with self._vms.lock(migration.vm_id):
                current = self._store.get_vm(migration.vm_id)
                if current is None:
                    raise NotFoundError(f"VM {migration.vm_name} was deleted")
                taken = None
                if not taken_by_failover(current, migration):
                    taken = await self._take_over(current, migration, target)
        except ManagerError as error:
            taken = await self._ask(target.name, vm.id)
            if not holds_new_lease(taken, migration.lease_generation):
                return await self._quick_back(migration, f"{error.message}")
        if taken is None:
            return await self._leave_to_failover(migration)
        return await self._quick_forward(job, migration, taken)

    async def _leave_to_failover(self, migration: MigrationRecord) -> str:
        return await self._conclude(
            migration, Outcome.UNKNOWN, None, None, "the quick migration stopped before its take-over"
        )

    async def _take_over(self, vm: VmRecord, migration: MigrationRecord, target: HostRecord) -> ReportedVm:
        moved = replace(vm, host=target.name, storage=migration.storage or vm.storage)
        try:
            return await self._agents.create_vm(
                target.name,
                target.address or "",
                moved,
                take_over=True,
                lease_generation=migration.lease_generation,
            )
        except AlreadyExistsError:
            return await self._agents.get_vm(target.name, target.address or "", vm.id)

    async def _quick_forward(self, job: JobHandle, migration: MigrationRecord, taken: ReportedVm) -> str:
        """The destination owns the VM: bring it back to what it was doing there."""
        target = self._host(migration.destination)
        async with self._vms.lock(migration.vm_id):
            vm = self._store.get_vm(migration.vm_id)
            failover = vm is not None and taken_by_failover(vm, migration)
            if vm is not None and not failover:
                self._move_record(vm, migration, target, taken, release=False)
        if failover:
            # The failover restarts the VM from what was taken over (its lease is newer).
            return await self._leave_to_failover(migration)
        migration = self._save(migration, phase=STEP_TAKEN_OVER)
        self._crash_points.reach(crash_points.QUICK_TAKEN_OVER)
        problem = ""
        if migration.vm_state_before in HOLDS_MEMORY and taken.state is VmState.SAVED:
            job.progress(70, f"Restoring VM {migration.vm_name} on {target.name}")
            try:
                reported = await self._agents.operate_vm(
                    target.name, target.address or "", migration.vm_id, VmOperation.RESTORE
                )
                if migration.vm_state_before is VmState.PAUSED:
                    reported = await self._agents.operate_vm(
                        target.name, target.address or "", migration.vm_id, VmOperation.PAUSE
                    )
                taken = reported
            except ManagerError as error:
                problem = f"it could not be restored there: {error.message}"
                taken = await self._ask(target.name, migration.vm_id) or taken
        migration = self._save(migration, phase=STEP_RESTORED)
        source = self._store.get_host(migration.source)
        if source is not None and source.address:
            try:
                # The source's copy is fenced by the newer lease; the agent keeps the files.
                await self._agents.delete_vm(source.name, source.address, migration.vm_id)
            except NotFoundError:
                pass  # the source let its fenced copy go already
            except ManagerError as error:
                log.info("host %s kept its copy of VM %s: %s", source.name, migration.vm_name, error.message)
        async with self._vms.lock(migration.vm_id):
            vm = self._store.get_vm(migration.vm_id)
            if vm is not None:
                self._vms.record(replace(record_observed(vm, taken.state, taken.reason), migration_id=None))
        done = self._save(migration, state=MigrationState.COMPLETED, phase="completed", error=problem)
        fallback = " (fell back from live migration)" if done.fell_back_to_quick else ""
        summary = f"VM {done.vm_name} moved to {done.destination} by quick migration{fallback}"
        if problem:
            summary += f", but {problem}"
        self._emit(done, summary)
        if problem:
            raise MigrationFailed(summary)
        return summary

    async def _quick_back(self, migration: MigrationRecord, error: str) -> str:
        """Nothing moved: the source restores what it saved; the VM stays there."""
        source = self._store.get_host(migration.source)
        report = await self._ask(migration.source, migration.vm_id)
        if (
            source is not None
            and source.address
            and report is not None
            and report.state is VmState.SAVED
            and migration.vm_state_before in HOLDS_MEMORY
        ):
            try:
                report = await self._agents.operate_vm(
                    source.name, source.address, migration.vm_id, VmOperation.RESTORE
                )
                if migration.vm_state_before is VmState.PAUSED:
                    report = await self._agents.operate_vm(
                        source.name, source.address, migration.vm_id, VmOperation.PAUSE
                    )
            except ManagerError as restore_error:
                error += f"; restoring it on {migration.source} failed too: {restore_error.message}"
                report = await self._ask(migration.source, migration.vm_id)
        outcome = Outcome.STAYED if report is not None else Outcome.UNKNOWN
        return await self._conclude(migration, outcome, report, None, error)

    # --- storage migration on one host -------------------------------------------------

    async def _move_files(self, job: JobHandle, migration: MigrationRecord) -> str:
        host = self._host(migration.source)
        assert migration.storage is not None
        job.progress(10, f"Moving the files of VM {migration.vm_name} to {migration.storage.name}")
        try:
            result = await self._agents.move_vm_storage(
                host.name, host.address or "", migration.vm_id, migration.storage
            )
        except ManagerError as error:
            report = await self._ask(host.name, migration.vm_id)
            return await self._conclude(
                migration, Outcome.STAYED if report else Outcome.UNKNOWN, report, None, error.message
            )
        async with self._vms.lock(migration.vm_id):
            vm = self._store.get_vm(migration.vm_id)
            if vm is not None:
                moved = replace(
                    record_observed(vm, result.vm.state, result.vm.reason),
                    storage=result.vm.storage or migration.storage,
                    migration_id=None,
                )
                self._vms.record(with_configuration(moved, host.cluster))
        done = self._save(
            migration,
            state=MigrationState.COMPLETED,
            phase="completed",
            bytes_sent=result.bytes_copied,
            duration_ms=result.duration_ms,
            blackout_ms=result.blackout_ms,
        )
        summary = (
            f"files of VM {done.vm_name} moved to {migration.storage.name} on {host.name}: "
            f"{result.bytes_copied / 1e6:.1f} MB in {result.duration_ms} ms, blackout {result.blackout_ms} ms"
        )
        self._emit(done, summary)
        return summary

    # --- the live-migration slots ------------------------------------------------------

    async def _take_slot(self, slot: SlotRequest) -> None:
        self._waiting.append(slot)
        admitted = False
        try:
            async with self._slots_changed:
                while slot.migration_id not in admit(
                    self._waiting, list(self._running.values()), self.policy.max_live_migrations_per_host
                ):
                    await self._slots_changed.wait()
                self._running[slot.migration_id] = slot
                admitted = True
        finally:
            self._waiting.remove(slot)
            if not admitted:
                # A waiter kept later migrations sharing its hosts waiting: they look again.
                async with self._slots_changed:
                    self._slots_changed.notify_all()

    async def _release_slot(self, slot: SlotRequest) -> None:
        self._running.pop(slot.migration_id, None)
        async with self._slots_changed:
            self._slots_changed.notify_all()

    # --- after a manager restart -------------------------------------------------------

    def settle_queued(self) -> None:
        """On load: a queued migration never began; a running one is settled once the
        agents can be asked (`recover`). Its VM stays out of refresh until then."""
        self._to_recover = []
        for migration in self._store.list_migrations(1_000_000, OPEN_STATES):
            if migration.state is MigrationState.QUEUED:
                failed = self._save(migration, state=MigrationState.FAILED, error=RESTARTED_BEFORE)
                vm = self._store.get_vm(migration.vm_id)
                if vm is not None:
                    self._release_vm(vm, migration)
                self._emit(failed, f"migration of VM {failed.vm_name} failed: {RESTARTED_BEFORE}")
                continue
            self._vms.claims.claim(migration.vm_id, Claim.MIGRATION)
            self._to_recover.append(migration.id)
            if _runs_live(migration):
                # Its agents may still be migrating: it holds its hosts' slots until settled.
                self._running[migration.id] = _slot(migration)

    def jobs_being_settled(self) -> set[str]:
        """The jobs of the migrations `recover` will settle: they end when it does, with
        the migration's outcome, rather than as interrupted."""
        jobs = (self._store.get_migration(mid) for mid in self._to_recover)
        return {m.job_id for m in jobs if m is not None and m.job_id}

    def concluded_jobs(self) -> dict[str, tuple[JobState, str]]:
        """Jobs whose migration ended but which a restart caught before they did: what
        they end with (state, and the message or error), rather than as interrupted.
        Such a job's migration is among the newest, so only those are read."""
        ended: dict[str, tuple[JobState, str]] = {}
        for migration in self._store.list_migrations(RECENT_MIGRATIONS):
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
        migration = self.get(migration_id)
        job: JobHandle = _NoJob()
        try:
            if migration.job_id:
                try:
                    job = self._jobs.adopt(migration.job_id)
                except NotFoundError:
                    log.warning("migration %s: its job %s is gone", migration_id, migration.job_id)
            async with self._vms.lock(migration.vm_id):
                pass  # a job of this process that still holds the VM goes first
            job.progress(0, f"Settling the migration of VM {migration.vm_name} after a manager restart")
            if migration.kind is MigrationKind.QUICK or migration.fell_back_to_quick:
                summary = await self._recover_quick(job, migration)
            elif migration.source == migration.destination:
                summary = await self._recover_files(migration)
            else:
                summary = await self._recover_live(job, migration)
        except MigrationFailed as failure:
            job.end(failure.message)  # recorded as failed, with its reason
        except Exception as error:
            # The migration ends (failed) before its job does, and lets go of its VM,
            # whose next refresh records where the agents have it. (_abandon logs a bug.)
            await self._abandon(migration_id, error)
            why = error.message if isinstance(error, ManagerError) else f"internal error: {error!r}"
            job.end(f"the migration could not be settled after the manager restarted: {why}")
        else:
            job.end(None, summary)
        finally:
            self._vms.claims.release(migration.vm_id, Claim.MIGRATION)
            await self._release_slot(_slot(migration))

    async def _recover_live(self, job: JobHandle, migration: MigrationRecord) -> str:
        restarted = "the manager restarted during the migration"
        vm = self._store.get_vm(migration.vm_id)
        if vm is not None:
            # The source runs the migration whoever listens, and remembers how recent
            # ones ended: following it again by its id brings the figures too.
            followed = await self._follow_again(job, migration, vm)
            if isinstance(followed, tuple):
                return await self._live_done(*followed, after_restart=True)
            migration = self.get(migration.id)
            if followed is not None:
                restarted = f"{restarted}: {followed.message}"  # the agents' own reason
                if (
                    migration.kind is MigrationKind.LIVE
                    and followed.migration_failure is MigrationFailure.NOT_CONVERGED
                    and migration.no_converge == "quick"
                ):
                    await self._release_slot(_slot(migration))
                    return await self._fall_back(job, migration, followed.message)
        source_report, source_answered = await self._watch_source(
            migration, lambda report: still_moving(report, migration.id)
        )
        target_report = await self._ask(migration.destination, migration.vm_id)
        outcome = settle(
            source_report, target_report, migration.lease_generation, source_let_go=source_answered
        )
        return await self._conclude(migration, outcome, source_report, target_report, restarted)

    async def _recover_quick(self, job: JobHandle, migration: MigrationRecord) -> str:
        if migration.phase == STEP_SAVING:
            # The source may still be saving: what it ends with decides.
            await self._watch_source(
                migration, lambda report: report is not None and report.state in IN_TRANSIT
            )
        taken = await self._ask(migration.destination, migration.vm_id)
        if holds_new_lease(taken, migration.lease_generation):
            assert taken is not None
            return await self._quick_forward(job, migration, taken)
        return await self._quick_back(migration, "the manager restarted during the quick migration")

    async def _recover_files(self, migration: MigrationRecord) -> str:
        report = await self._ask(migration.source, migration.vm_id)
        if report is not None and migration.storage is not None and report.storage == migration.storage:
            async with self._vms.lock(migration.vm_id):
                vm = self._store.get_vm(migration.vm_id)
                if vm is not None:
                    self._vms.record(
                        replace(
                            record_observed(vm, report.state, report.reason),
                            storage=report.storage,
                            migration_id=None,
                        )
                    )
            done = self._save(migration, state=MigrationState.COMPLETED, phase="completed")
            summary = f"files of VM {done.vm_name} are on {report.storage.name} (settled after a restart)"
            self._emit(done, summary)
            return summary
        return await self._conclude(
            migration,
            Outcome.STAYED if report else Outcome.UNKNOWN,
            report,
            None,
            "the manager restarted during the storage migration",
        )

    # --- helpers -----------------------------------------------------------------------

    def _host(self, name: str) -> HostRecord:
        host = self._store.get_host(name)
        if host is None:
            raise FailedPreconditionError(f"host {name} no longer exists")
        return host

    async def _ask(self, host_name: str, vm_id: str) -> ReportedVm | None:
        """What a host says of the VM now; None when it does not have it or does not answer."""
        report, _answered = await self._look(host_name, vm_id)
        return report

    async def _look(self, host_name: str, vm_id: str) -> tuple[ReportedVm | None, bool]:
        """What a host says of the VM now, and whether it answered at all: (None, True)
        is a host that answered that it does not have the VM."""
        host = self._store.get_host(host_name)
        if host is None or not host.address:
            return None, False
        try:
            return await self._agents.get_vm(host_name, host.address, vm_id), True
        except NotFoundError:
            return None, True
        except ManagerError as error:
            log.info("host %s says nothing of VM %s: %s", host_name, vm_id, error.message)
            return None, False

    async def _watch_source(
        self, migration: MigrationRecord, busy: Callable[[ReportedVm | None], bool]
    ) -> tuple[ReportedVm | None, bool]:
        """Ask the source until `busy` no longer holds of its answer (bounded); its last
        answer and whether it answered."""
        deadline = self._monotonic() + self._settings.migration_recovery_timeout
        report, answered = await self._look(migration.source, migration.vm_id)
        while busy(report) and self._monotonic() < deadline:
            await asyncio.sleep(self._settings.migration_recovery_poll)
            report, answered = await self._look(migration.source, migration.vm_id)
        return report, answered

    def _observe(self, vm: VmRecord, report: ReportedVm) -> VmRecord:
        updated = record_observed(self._store.get_vm(vm.id) or vm, report.state, report.reason)
        self._vms.record(updated)
        return updated

    def _save(
        self, migration: MigrationRecord, state: MigrationState | None = None, **changes: object
    ) -> MigrationRecord:
        current = self._store.get_migration(migration.id) or migration
        new_state = migration.state if state is None else state
        new_state = change_migration_state(migration.vm_name, current.state, new_state)
        updated = replace(migration, state=new_state, updated_at=self._clock(), **changes)  # type: ignore[arg-type]
        self._store.put_migration(updated)
        return updated

    def _emit(self, migration: MigrationRecord, detail: str) -> None:
        host = migration.destination if migration.state is MigrationState.COMPLETED else migration.source
        self._bus.emit("migration", detail, host=host, vm=migration.vm_name)


def _slot(migration: MigrationRecord) -> SlotRequest:
    return SlotRequest(migration.id, migration.source, migration.destination)


def _runs_live(migration: MigrationRecord) -> bool:
    """A migration the agents carry out as a live one (to another host, not quick)."""
    return (
        migration.kind is not MigrationKind.QUICK
        and not migration.fell_back_to_quick
        and migration.source != migration.destination
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

"""The emulated host at run time: its VMs, their guests, and every operation on them.

Each operation follows the same path: look at the VM (observe), ask the core whether
and how it may happen (decide), touch files and guest tasks (act), and write the new
power state to the registry (persist). Operations on one VM are serialised by a
lock; operations on different VMs run side by side. A copy whose storage lease moved
to another host is fenced: it is forgotten here, its files left to the new owner.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from node_agent.adapters.files import HostFiles, JournalFile, RegistryEntry, scan_disk_journal
from node_agent.adapters.migration_network import MigrationNetwork
from node_agent.app.crash_points import CrashPoints
from node_agent.app.guests import GuestHooks, HostedVm, release_guest, start_guest, stop_guest
from node_agent.app.migration_in import IncomingMigration
from node_agent.app.migration_out import OutgoingMigration, replay
from node_agent.app.ownership import SAVED_STATE_MISSING, claim_new, load_registered, take_over_files
from node_agent.app.stale_copies import StaleCopies
from node_agent.app.storage_move import StorageMoveResult, move_storage
from node_agent.core.compatibility import compatibility_reasons
from node_agent.core.config import HostConfig
from node_agent.core.cpu import GuestCpu, cpu_reasons, guest_cpu
from node_agent.core.errors import (
    AgentError,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    StorageFault,
)
from node_agent.core.guest import (
    GuestModel,
    PageVersions,
    decode_saved_state,
    decode_saved_state_with_cpu,
    encode_saved_state,
)
from node_agent.core.lease import (
    Fenced,
    check_write,
    is_fenced,
)
from node_agent.core.migration import FinishedMigrations, MigrationProgress, MigrationRequest
from node_agent.core.power import (
    HOLDS_MEMORY,
    RESTART_ON_RECOVERY,
    Action,
    Operation,
    PowerState,
    check_deletable,
    plan_operation,
    transition,
)
from node_agent.core.views import GuestView, HostLoad, HostView, StorageUsage, VmView
from node_agent.core.vm import (
    GIB,
    StorageKind,
    StorageRef,
    VmSpec,
    available_memory_mb,
    check_memory_fits,
    check_storage_visible,
    validate_spec,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


def _complete_even_if_abandoned(work: Coroutine[Any, Any, T]) -> Awaitable[T]:
    """Run an operation to its end even if the caller goes away.

    A caller's deadline must not leave a VM half saved or half started: the
    operation runs as its own task and only the caller's wait is cancelled.
    """
    task = asyncio.create_task(work)

    def consume(done: asyncio.Task[T]) -> None:
        if not done.cancelled() and done.exception() is not None:
            log.debug("an abandoned operation failed: %s", done.exception())

    task.add_done_callback(consume)
    return asyncio.shield(task)


class VmHost:
    """All VMs of this host and the operations the AgentService offers on them."""

    def __init__(
        self,
        config: HostConfig,
        files: HostFiles,
        clock: Callable[[], float] = time.time,
        state_dir: Path | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        peer_channel: Callable[[str], Any] | None = None,
        die: Callable[[], None] | None = None,
    ) -> None:
        self.config = config
        self.files = files
        self.clock = clock
        # Durations and guest ticks; injected so that a scenario's agent runs on virtual time.
        self.monotonic = monotonic
        # Where a migration step may be told to kill the agent (the agent's --state-dir).
        self.crash_points = CrashPoints(state_dir, die)
        # Which `havm fault isolate HOST --from migration` can cut.
        self.migration_network = MigrationNetwork(state_dir, monotonic)
        # How live migration reaches a peer agent: None for a socket (see MigrationPeer).
        self.peer_channel = peer_channel
        self.boot_id = uuid.uuid4().hex
        self.started_at = clock()
        # When an AgentService call last arrived: the management path was alive then.
        self.last_management_call = self.started_at
        self._vms: dict[str, HostedVm] = {}
        # Skeletons of VMs arriving by live migration: they hold memory but are not
        # this host's VMs until they resume.
        self.incoming: dict[str, HostedVm] = {}
        # Live migrations of this host's VMs by migration id, under way and lately
        # ended: a caller that lost its stream asks for the id again to follow it.
        self.outgoing: dict[str, OutgoingMigration] = {}
        self.finished_migrations = FinishedMigrations()
        # Migrations and other work that outlive the call that started them.
        self._background: set[asyncio.Task[Any]] = set()
        self._stale_copies = StaleCopies(self)

    def note_management_call(self) -> None:
        self.last_management_call = self.clock()

    # Reading

    def host_view(self) -> HostView:
        disks = tuple(
            self._usage(StorageRef(StorageKind.LOCAL_DISK, d.name), d.capacity_gb) for d in self.config.disks
        )
        volumes = tuple(
            self._usage(StorageRef(StorageKind(v.kind.value), v.name), v.capacity_gb)
            for v in self.config.volumes
        )
        return HostView(
            config=self.config,
            memory_free_mb=self.memory_free_mb(),
            disks=disks,
            volumes=volumes,
            boot_id=self.boot_id,
            started_at=self.started_at,
        )

    def memory_free_mb(self) -> int:
        return available_memory_mb(self.config, self._held_mb())

    def load(self) -> HostLoad:
        running = sum(1 for vm in self._vms.values() if vm.state is PowerState.RUNNING)
        return HostLoad(vms_running=running, memory_free_mb=self.memory_free_mb())

    def list_vms(self) -> list[VmView]:
        return [vm.view() for _, vm in sorted(self._vms.items())]

    def get_vm(self, vm_id: str) -> VmView:
        skeleton = self.incoming.get(vm_id)
        if skeleton is not None and vm_id not in self._vms:
            return skeleton.view()
        return self._get(vm_id).view()

    def hosted_vms(self) -> list[HostedVm]:
        return [vm for _, vm in sorted(self._vms.items())]

    def let_go_stale_copies(self) -> list[str]:
        """Forget the copies at rest here that another host took over (app.stale_copies)."""
        return self._stale_copies.let_go()

    def hosted(self, vm_id: str) -> HostedVm | None:
        """The VM of this host with this id, if it is still here."""
        return self._vms.get(vm_id)

    def operable(self, vm_id: str) -> HostedVm:
        """The VM an operation is about, or why there is none to operate on."""
        return self._get(vm_id)

    def adopt(self, vm: HostedVm) -> None:
        """Make a VM that arrived by live migration one of this host's VMs, and persist it."""
        self._vms[vm.spec.id] = vm
        self._persist(vm)

    def forget(self, vm: HostedVm) -> None:
        """Drop a VM that left this host; its files are no longer this host's concern."""
        if self._vms.get(vm.spec.id) is vm:
            del self._vms[vm.spec.id]
        self.files.remove_registry(vm.spec.id)
        log.info("VM %s (%s) left host %s", vm.label, vm.spec.id, self.config.name)

    async def guest_status(self, vm_id: str) -> GuestView:
        vm = self._get(vm_id)
        if vm.guest is not None:
            memory, journal = vm.guest.memory, vm.guest.journal
            digest = memory.digest()
        else:
            if vm.idle_journal is None:
                vm.idle_journal = await asyncio.to_thread(scan_disk_journal, vm.disk)
            journal = vm.idle_journal
            digest = ""
            if vm.state is PowerState.SAVED:
                if vm.saved_digest is None:
                    memory = await self._read_saved_memory(vm)
                    vm.saved_digest = memory.digest()
                digest = vm.saved_digest
        return GuestView(vm.spec.id, vm.state, vm.spec.memory_pages, digest, journal)

    # Creating and deleting

    def create_vm(self, spec: VmSpec, take_over: bool = False, lease_generation: int = 0) -> VmView:
        """Persist a new VM stopped, or take over (`take_over`) its files on shared storage.

        Synchronous on purpose: with no await between the checks and the insert,
        two concurrent creations cannot both pass the checks.
        """
        validate_spec(spec, self.config)
        if spec.id in self.incoming:
            raise AlreadyExists(f"VM {spec.id} is arriving on host {self.config.name} by live migration")
        existing = self._vms.get(spec.id)
        if existing is not None:
            if take_over and existing.lease_generation == lease_generation > 0:
                return existing.view()  # a retried take-over that already succeeded
            if not (take_over and self._drop_if_fenced(existing)):
                raise AlreadyExists(f"VM {spec.id} already exists on host {self.config.name}")
        capacity = check_storage_visible(spec.storage, self.config)
        vm_dir = self.files.vm_dir(spec)
        if take_over:
            claim = take_over_files(self.files, self.config, spec, vm_dir, lease_generation)
        else:
            claim = claim_new(self.files, self.config, spec, vm_dir, capacity)
        cpu = self._saved_cpu(spec, vm_dir) if claim.state is PowerState.SAVED else None
        return self._insert(spec, vm_dir, claim.state, claim.lease.generation, cpu).view()

    def _saved_cpu(self, spec: VmSpec, vm_dir: Path) -> GuestCpu | None:
        try:
            return decode_saved_state_with_cpu(spec.id, self.files.read_saved_state(vm_dir)).cpu
        except AgentError:
            return None  # a damaged image fails at restore, with its own sentence

    def _insert(
        self, spec: VmSpec, vm_dir: Path, state: PowerState, generation: int, cpu: GuestCpu | None = None
    ) -> HostedVm:
        vm = HostedVm(
            spec=spec,
            vm_dir=vm_dir,
            state=state,
            state_since=self.clock(),
            lease_watch=self.files.lease_watch(vm_dir),
            lease_generation=generation,
            cpu=cpu,
        )
        self._vms[spec.id] = vm
        self._persist(vm)
        return vm

    async def delete_vm(self, vm_id: str) -> None:
        vm = self._get(vm_id)
        await _complete_even_if_abandoned(self._delete_locked(vm))

    async def _delete_locked(self, vm: HostedVm) -> None:
        vm_id = vm.spec.id
        async with vm.lock:
            self._check_still_here(vm)
            self.check_not_migrating(vm)
            check_deletable(vm.label, vm.state)
            # A failed VM's guest has ended, but make sure no task or open disk is left.
            await stop_guest(vm)
            release_guest(vm)
            try:
                _, owner = self.files.read_vm_config(vm.vm_dir)
                lease = self.files.read_lease(vm.vm_dir)
            except AgentError as exc:
                if vm.spec.storage.kind is not StorageKind.LOCAL_DISK:
                    # Unreadable files on shared storage may be another host's by now: only
                    # the registration goes, never files this host cannot prove are its own.
                    log.warning("VM %s: its files could not be read (%s); kept", vm.label, exc.message)
                    owner, lease = "", None
                else:
                    owner, lease = self.config.name, None
            # Files that another host has taken over (vm.json or lease) are that host's to delete.
            if owner == self.config.name and not is_fenced(self.config.name, vm.lease_generation, lease):
                await asyncio.to_thread(self.files.remove_vm_dir, vm.vm_dir)
            self.files.remove_registry(vm_id)
            del self._vms[vm_id]
            log.info("VM %s (%s) deleted", vm.label, vm_id)

    # Power operations

    async def operate(self, vm_id: str, operation: Operation) -> VmView:
        vm = self._get(vm_id)
        return await _complete_even_if_abandoned(self._operate_locked(vm, operation))

    async def _operate_locked(self, vm: HostedVm, operation: Operation) -> VmView:
        async with vm.lock:
            self._check_still_here(vm)
            self.check_not_migrating(vm)
            action = plan_operation(vm.label, vm.state, operation)
            await self._perform(vm, action)
            return vm.view()

    async def _perform(self, vm: HostedVm, action: Action) -> None:
        if action is Action.POWER_ON:
            await self._power_on(vm)
        elif action is Action.RESTORE:
            await self._restore(vm)
        elif action is Action.SHUTDOWN:
            # The guest keeps running while it shuts down cleanly.
            await asyncio.sleep(self.config.settings.shutdown_grace_s)
            await self._power_off(vm)
        elif action is Action.TURN_OFF:
            await self._power_off(vm)
        elif action is Action.SAVE:
            await self._save(vm)
        elif action is Action.PAUSE:
            await stop_guest(vm)
            self._set_state(vm, PowerState.PAUSED)
        elif action is Action.RESUME:
            self._set_state(vm, PowerState.RUNNING)
            self._start_guest(vm)

    async def _power_on(self, vm: HostedVm) -> None:
        self._check_lease(vm)
        check_memory_fits(self.config, vm.spec, self._held_mb())
        self._set_state(vm, PowerState.STARTING)
        try:
            journal = JournalFile(vm.disk)
            position = await asyncio.to_thread(journal.scan)
        except OSError as exc:
            self._set_state(vm, PowerState.FAILED, f"its virtual disk cannot be opened: {exc}")
            raise FailedPrecondition(f"VM {vm.label} cannot start: {vm.reason}") from None
        # A fresh boot makes any older memory image meaningless (a failed restore
        # leaves one); a host taking the VM over must not restore it.
        await asyncio.to_thread(self.files.remove_saved_state, vm.vm_dir)
        workload = vm.spec.effective_workload
        vm.cpu = guest_cpu(self.config.cpu, vm.spec.processor_compatibility)
        vm.guest = GuestModel.fresh_boot(vm.spec.id, vm.spec.memory_pages, workload, position)
        vm.journal, vm.idle_journal, vm.saved_digest = journal, None, None
        self._set_state(vm, PowerState.RUNNING)
        self._start_guest(vm)

    async def _restore(self, vm: HostedVm) -> None:
        self._check_lease(vm)
        check_memory_fits(self.config, vm.spec, self._held_mb())
        if vm.cpu is not None:
            # The image stays usable on a host that has the features: the VM stays saved.
            missing = cpu_reasons(
                vm.label, self.config.name, self.config.cpu, vm.cpu, vm.spec.processor_compatibility
            )
            if missing:
                raise FailedPrecondition(f"VM {vm.label} cannot be restored here: {missing[0]}")
        self._set_state(vm, PowerState.STARTING)
        try:
            if not self.files.saved_state_path(vm.vm_dir).exists():
                raise StorageFault(SAVED_STATE_MISSING)
            memory = await self._read_saved_memory(vm)
            journal = JournalFile(vm.disk)
            position = await asyncio.to_thread(journal.scan)
        except (AgentError, OSError) as exc:
            # FAILED, as recovery does: staying SAVED would only make every later
            # restore fail the same way; start (a fresh boot) or turn off clears it.
            reason = getattr(exc, "message", str(exc))
            self._set_state(vm, PowerState.FAILED, reason)
            raise FailedPrecondition(f"VM {vm.label} cannot be restored: {reason}") from None
        vm.guest = GuestModel(vm.spec.id, memory, vm.spec.effective_workload, position)
        vm.journal, vm.idle_journal, vm.saved_digest = journal, None, None
        if vm.cpu is None:  # an image written before the processor was recorded
            vm.cpu = guest_cpu(self.config.cpu, vm.spec.processor_compatibility)
        # Like Hyper-V, the saved state is consumed by the restore.
        self.files.remove_saved_state(vm.vm_dir)
        self._set_state(vm, PowerState.RUNNING)
        self._start_guest(vm)

    async def _power_off(self, vm: HostedVm) -> None:
        await stop_guest(vm)
        release_guest(vm)
        self._set_state(vm, PowerState.STOPPED)

    async def _save(self, vm: HostedVm) -> None:
        was = vm.state
        await stop_guest(vm)
        self._set_state(vm, PowerState.SAVING)
        assert vm.guest is not None
        memory = vm.guest.memory
        try:
            data = await asyncio.to_thread(encode_saved_state, vm.spec.id, memory, vm.cpu)
            await asyncio.to_thread(self.files.write_saved_state, vm.vm_dir, data)
        except OSError as exc:
            self._set_state(vm, was, f"save failed: {exc}")
            if was is PowerState.RUNNING:
                self._start_guest(vm)
            raise FailedPrecondition(f"VM {vm.label} cannot be saved: {exc}") from None
        vm.saved_digest = memory.digest()
        release_guest(vm)
        self._set_state(vm, PowerState.SAVED)

    async def _read_saved_memory(self, vm: HostedVm) -> PageVersions:
        data = await asyncio.to_thread(self.files.read_saved_state, vm.vm_dir)
        return await asyncio.to_thread(decode_saved_state, vm.spec.id, data)

    # Settings, compatibility and moves

    async def update_vm(self, vm_id: str, processor_compatibility: bool | None) -> VmView:
        vm = self._get(vm_id)
        async with vm.lock:
            self._check_still_here(vm)
            self.check_not_migrating(vm)
            if processor_compatibility is None or processor_compatibility == vm.spec.processor_compatibility:
                return vm.view()
            if vm.state is not PowerState.STOPPED:
                raise FailedPrecondition(
                    f"VM {vm.label} is {vm.state.value}; processor compatibility mode can be changed "
                    "only while it is stopped"
                )
            spec = dataclasses.replace(vm.spec, processor_compatibility=processor_compatibility)
            await asyncio.to_thread(self.files.write_vm_config, vm.vm_dir, spec)
            vm.spec = spec
            self._persist(vm)
            log.info(
                "VM %s: processor compatibility mode %s", vm.label, "on" if processor_compatibility else "off"
            )
            return vm.view()

    def compatibility(self, spec: VmSpec, cpu: GuestCpu | None) -> list[str]:
        """Every reason this host cannot take `spec` now; empty when it can."""
        reasons = compatibility_reasons(spec, cpu, self.config, self.memory_free_mb())
        here = self._vms.get(spec.id)
        if spec.id in self.incoming or (here is not None and not self._drop_if_fenced(here)):
            reasons.append(f"VM {spec.label} ({spec.id}) is already on host {self.config.name}")
        return reasons

    def migrate_vm(self, request: MigrationRequest) -> AsyncGenerator[MigrationProgress, None]:
        """Start a live migration of one of this host's VMs; iterate for its progress.

        The checks run before anything is awaited, so two requests for one VM
        cannot both start; the migration then runs on its own, whoever listens.
        A request naming a migration this host has under way or remembers follows
        that one instead, whatever else it says: its caller lost the first stream.
        """
        following = self.follow_migration(request.migration_id)
        if following is not None:
            return following
        if request.reattach:
            raise NotFound(
                f"host {self.config.name} knows no live migration {request.migration_id or '(no id)'}: "
                "it never ran here, or the agent restarted since"
            )
        migration = OutgoingMigration.prepare(self, request)
        self.outgoing[request.migration_id] = migration
        self.spawn(self._run_outgoing(migration), f"migration-{request.migration_id}")
        return migration.progress()

    def follow_migration(self, migration_id: str) -> AsyncGenerator[MigrationProgress, None] | None:
        """The progress of a live migration this host knows by its id; None if it knows none."""
        if not migration_id:
            return None
        running = self.outgoing.get(migration_id)
        if running is not None:
            log.info(
                "live migration %s of VM %s: a caller re-attaches during %s (%d listening)",
                migration_id,
                running.vm.label,
                running.phase.value,
                running.listening,
            )
            return running.progress()
        outcome = self.finished_migrations.get(migration_id)
        if outcome is not None:
            log.info(
                "live migration %s: a caller re-attaches after its end (%s)",
                migration_id,
                "failed" if isinstance(outcome, AgentError) else "completed",
            )
            return replay(outcome)
        return None

    async def _run_outgoing(self, migration: OutgoingMigration) -> None:
        migration_id = migration.plan.request.migration_id
        try:
            await migration.run()
        finally:
            # No await between the outcome's publication and this: a caller asking
            # meanwhile finds the migration in one registry or the other.
            self.outgoing.pop(migration_id, None)
            if migration.outcome is not None:
                self.finished_migrations.remember(migration_id, migration.outcome)

    def receive_migration(self) -> IncomingMigration:
        """The destination side of a live migration; the session outlives its stream."""
        session = IncomingMigration(self)
        self.spawn(session.run(), "incoming-migration")
        return session

    async def move_vm_storage(self, vm_id: str, storage: StorageRef) -> StorageMoveResult:
        vm = self._get(vm_id)
        return await _complete_even_if_abandoned(move_storage(self, vm, storage))

    def spawn(self, work: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run work to its end in the background, keeping a reference to it."""
        task = asyncio.create_task(work, name=name)
        self._background.add(task)

        def done(finished: asyncio.Task[Any]) -> None:
            self._background.discard(finished)
            if not finished.cancelled() and finished.exception() is not None:
                log.debug("%s ended with: %s", name, finished.exception())

        task.add_done_callback(done)
        return task

    # Start and stop of the agent

    async def recover(self) -> None:
        """Find this host's VMs again and restart those that were running."""
        entries, problems = self.files.read_registry()
        for problem in problems:
            log.warning("%s", problem)
        to_start: list[HostedVm] = []
        for entry in entries:
            vm = load_registered(self.files, self.config, entry)
            if vm is None:
                continue
            self._vms[vm.spec.id] = vm
            if vm.state is PowerState.STOPPED and entry.power_state in RESTART_ON_RECOVERY:
                to_start.append(vm)
        log.info("found %d VMs in the registry", len(self._vms))
        for vm in to_start:
            log.info(
                "VM %s was %s when the agent stopped; starting it again",
                vm.label,
                self._registry_state(vm.spec.id, entries).value,
            )
            try:
                await self._power_on(vm)
            except AgentError as exc:
                log.error("VM %s cannot be started again: %s", vm.label, exc.message)
                if vm.state is PowerState.STOPPED and self._vms.get(vm.spec.id) is vm:
                    self._set_state(vm, PowerState.FAILED, exc.message)

    @staticmethod
    def _registry_state(vm_id: str, entries: list[RegistryEntry]) -> PowerState:
        return next(e.power_state for e in entries if e.vm_id == vm_id)

    async def stop(self) -> None:
        """Stop every guest; registry states stay as they are so running VMs restart."""
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.wait(list(self._background))
        for vm in self._vms.values():
            await stop_guest(vm)
            if vm.journal is not None:
                vm.journal.close()
                vm.journal = None
        log.info("all guests stopped")

    # Helpers

    def _get(self, vm_id: str) -> HostedVm:
        if not vm_id:
            raise InvalidArgument("vm_id: is required")
        vm = self._vms.get(vm_id)
        if vm is None:
            skeleton = self.incoming.get(vm_id)
            if skeleton is not None:
                raise FailedPrecondition(
                    f"VM {skeleton.label} is arriving on host {self.config.name} by live migration "
                    f"(migration {skeleton.migration_id}); wait until it has arrived"
                )
            raise NotFound(f"host {self.config.name} has no VM with id {vm_id}")
        return vm

    def _check_still_here(self, vm: HostedVm) -> None:
        if self._vms.get(vm.spec.id) is not vm:
            raise NotFound(f"VM {vm.label} was deleted meanwhile")

    def _held_mb(self) -> list[int]:
        held = [vm.spec.memory_mb for vm in self._vms.values() if vm.state in HOLDS_MEMORY]
        return held + [vm.spec.memory_mb for vm in self.incoming.values()]

    def _usage(self, storage: StorageRef, capacity_gb: int) -> StorageUsage:
        capacity = capacity_gb * GIB
        free = max(0, capacity - self.files.used_bytes(storage))
        return StorageUsage(storage.name, storage.kind, capacity, free)

    def check_not_migrating(self, vm: HostedVm) -> None:
        if vm.migration_id:
            raise FailedPrecondition(
                f"VM {vm.label} is being live-migrated (migration {vm.migration_id}); "
                "wait until the migration has ended"
            )

    def start_guest(self, vm: HostedVm) -> None:
        self._start_guest(vm)

    def _start_guest(self, vm: HostedVm) -> None:
        hooks = GuestHooks(
            self.config.name,
            self.config.settings.guest_tick_s,
            self._guest_failed,
            self._fenced,
            self.monotonic,
        )
        start_guest(vm, hooks)

    def _check_lease(self, vm: HostedVm) -> None:
        """A copy that lost its lease must not start: forget it and say why."""
        try:
            check_write(vm.label, self.config.name, vm.lease_generation, vm.lease_watch.current())
        except Fenced as exc:
            self._forget(vm, exc)
            raise

    def _drop_if_fenced(self, vm: HostedVm) -> bool:
        """Forget an idle copy that lost its lease (the VM went away and comes back)."""
        if vm.state in HOLDS_MEMORY:
            return False  # its guest finds out at its next write, or an operation does
        try:
            check_write(vm.label, self.config.name, vm.lease_generation, vm.lease_watch.current())
        except Fenced as exc:
            self._forget(vm, exc)
            return True
        return False

    def fence(self, vm: HostedVm, exc: Fenced) -> None:
        """Drop a copy found fenced while its guest was stopped (a live migration's blackout)."""
        release_guest(vm)
        self._fenced(vm, exc)

    def _fenced(self, vm: HostedVm, exc: Fenced) -> None:
        """The guest found its lease gone: it already stopped and released its memory."""
        if vm.state is not PowerState.STOPPED:
            vm.state = transition(vm.label, vm.state, PowerState.STOPPED)
        self._forget(vm, exc)

    def _forget(self, vm: HostedVm, exc: Fenced) -> None:
        """Drop a fenced VM from this host; its files are the new owner's."""
        log.warning("%s", exc.message)
        if self._vms.get(vm.spec.id) is vm:
            del self._vms[vm.spec.id]
        self.files.remove_registry(vm.spec.id)

    def _guest_failed(self, vm: HostedVm, reason: str) -> None:
        self._set_state(vm, PowerState.FAILED, reason)

    def _set_state(self, vm: HostedVm, new: PowerState, reason: str = "") -> None:
        if self._vms.get(vm.spec.id) is not vm:
            # Fenced while an operation was under way (a shutdown's grace period).
            raise NotFound(f"VM {vm.label} is no longer on host {self.config.name}: it was fenced meanwhile")
        vm.state = transition(vm.label, vm.state, new)
        vm.state_since = self.clock()
        vm.reason = reason
        if new in (PowerState.STOPPED, PowerState.FAILED):
            vm.cpu = None
        self._persist(vm)

    def persist(self, vm: HostedVm) -> None:
        self._persist(vm)

    def _persist(self, vm: HostedVm) -> None:
        if self._vms.get(vm.spec.id) is not vm:
            return  # forgotten meanwhile (fenced): an operation finishing late must not revive it
        entry = RegistryEntry(
            vm.spec.id,
            vm.spec.storage,
            str(vm.vm_dir),
            vm.state,
            vm.state_since,
            vm.reason,
            vm.lease_generation,
            vm.cpu,
        )
        try:
            self.files.write_registry(entry)
        except OSError as exc:
            log.error("VM %s: registry entry cannot be written: %s", vm.label, exc)

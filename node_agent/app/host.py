"""The emulated host at run time: the composition root of the agent's app.

VmHost is what the AgentService serves. It wires the app's parts together and hands
each the ports it needs (host storage, virtual disks, the peer links, the clock):
HostedVms owns the VMs and their records, PowerOperations changes their power state,
and the flows of live migration, network transfers and storage moves run on those two,
never on VmHost, so that none of them depends on the whole host. Only here and in
app.runner are adapters built. Creation, deletion and settings are here because they
are short and touch nothing else.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any, TypeVar

from node_agent.adapters.clock import SYSTEM_CLOCK, FunctionClock
from node_agent.adapters.files import FileDisks, HostFiles
from node_agent.adapters.grpc_peer import GrpcPeerConnector
from node_agent.adapters.grpc_transfer_peer import GrpcFilesConnector
from node_agent.adapters.host_changes_file import HostChangesFile
from node_agent.adapters.migration_network import MigrationNetwork
from node_agent.app.crash_points import CrashPoints
from node_agent.app.disk_conversion import convert_disk
from node_agent.app.guests import HostedVm, release_guest, stop_guest
from node_agent.app.host_admin import HostAdministration
from node_agent.app.hosted_vms import HostedVms
from node_agent.app.migration_in import IncomingMigration
from node_agent.app.migration_out import OutgoingMigration
from node_agent.app.migration_updates import replay
from node_agent.app.ownership import claim_new, load_registered, take_over_files
from node_agent.app.power_operations import PowerOperations
from node_agent.app.stale_copies import StaleCopies
from node_agent.app.storage_move import StorageMoveResult, move_storage
from node_agent.app.transfer_in import IncomingTransfer
from node_agent.app.transfer_out import OutgoingTransfer
from node_agent.app.vm_settings import update_settings
from node_agent.core.config import HostConfig
from node_agent.core.cpu import GuestCpu
from node_agent.core.disk_conversion import ConversionProgress
from node_agent.core.errors import AgentError, AlreadyExists, NotFound, Unavailable
from node_agent.core.guest import decode_saved_state_with_cpu
from node_agent.core.host_storage import RegistryEntry
from node_agent.core.lease import is_fenced
from node_agent.core.migration import FinishedMigrations, MigrationProgress, MigrationRequest
from node_agent.core.power import RESTART_ON_RECOVERY, Operation, PowerState, check_deletable
from node_agent.core.transfer import TransferMessage, TransferProgress, TransferRequest
from node_agent.core.views import GuestView, HostLoad, HostView, StorageUsage, VmView
from node_agent.core.vm import (
    GIB,
    StorageKind,
    StorageRef,
    VmSpec,
    check_runs_vms,
    check_storage_visible,
    validate_spec,
)
from node_agent.core.vm_devices import VmUpdate

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
        clock: Callable[[], float] | None = None,
        state_dir: Path | None = None,
        monotonic: Callable[[], float] | None = None,
        peer_channel: Callable[[str, str], Any] | None = None,
        die: Callable[[], None] | None = None,
    ) -> None:
        # The system's clocks unless given: a scenario's agent runs on virtual time.
        time_port = FunctionClock(clock or SYSTEM_CLOCK.wall, monotonic or SYSTEM_CLOCK.ticks)
        self.files = files
        self.clock = time_port.time
        self.monotonic = time_port.monotonic
        # Where a migration step may be told to kill the agent (the agent's --state-dir).
        self.crash_points = CrashPoints(state_dir, die)
        # Which `havm fault isolate HOST --from migration` can cut.
        self.migration_network = MigrationNetwork(state_dir, time_port.monotonic)
        # How live migration reaches a peer agent: a socket unless a channel maker is given.
        self._connect = GrpcPeerConnector(
            config.settings.migration_stall_timeout_s, self.migration_network, peer_channel
        )
        # Network transfers go the same way, on their own streams.
        self._send_files = GrpcFilesConnector(
            config.settings.migration_stall_timeout_s, self.migration_network, peer_channel
        )
        self.vms = HostedVms(config, files, FileDisks(), time_port)
        self._power = PowerOperations(self.vms)
        # Networks and volumes an administrator changes on the host; kept in the state
        # directory (app.runner starts the host with them).
        self.administration = HostAdministration(
            self.vms, HostChangesFile(state_dir) if state_dir is not None else None
        )
        self.boot_id = uuid.uuid4().hex
        self.started_at = self.clock()
        # When an AgentService call last arrived: the management path was alive then.
        self.last_management_call = self.started_at
        # Live migrations of this host's VMs by migration id, under way and lately
        # ended: a caller that lost its stream asks for the id again to follow it.
        self.outgoing: dict[str, OutgoingMigration] = {}
        self.finished_migrations = FinishedMigrations()
        # Network transfers of this host's VMs under way, by transfer id.
        self.transfers: dict[str, OutgoingTransfer] = {}
        # Set once the agent is asked to stop (begin_stop): it neither takes nor sends a VM then.
        self.stopping = False
        # Migrations and other work that outlive the call that started them.
        self._background: set[asyncio.Task[Any]] = set()
        self._stale_copies = StaleCopies(self.vms)

    @property
    def config(self) -> HostConfig:
        """The host's description now (HostedVms owns it: an administrator may change it)."""
        return self.vms.config

    def note_management_call(self) -> None:
        self.last_management_call = self.clock()

    # Reading

    @property
    def incoming(self) -> Mapping[str, HostedVm]:
        """Skeletons of VMs arriving by live migration: they hold memory but are not this
        host's VMs until they resume."""
        return self.vms.incoming

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
        return self.vms.memory_free_mb()

    def load(self) -> HostLoad:
        running = sum(1 for vm in self.vms.all() if vm.state is PowerState.RUNNING)
        return HostLoad(vms_running=running, memory_free_mb=self.memory_free_mb())

    def list_vms(self) -> list[VmView]:
        return [vm.view() for vm in self.vms.all()]

    def get_vm(self, vm_id: str) -> VmView:
        skeleton = self.vms.incoming.get(vm_id)
        if skeleton is not None and self.vms.hosted(vm_id) is None:
            return skeleton.view()
        return self.vms.operable(vm_id).view()

    def hosted(self, vm_id: str) -> HostedVm | None:
        """The VM of this host with this id, if it is still here."""
        return self.vms.hosted(vm_id)

    def let_go_stale_copies(self) -> list[str]:
        """Forget the copies at rest here that another host took over (app.stale_copies)."""
        return self._stale_copies.let_go()

    async def guest_status(self, vm_id: str) -> GuestView:
        vm = self.vms.operable(vm_id)
        if vm.guest is not None:
            memory, journal = vm.guest.memory, vm.guest.journal
            digest = memory.digest()
        else:
            if vm.idle_journal is None:
                vm.idle_journal = await asyncio.to_thread(self.vms.disks.scan_journal, vm.disk)
            journal = vm.idle_journal
            digest = ""
            if vm.state is PowerState.SAVED:
                if vm.saved_digest is None:
                    memory = await self._power.read_saved_memory(vm)
                    vm.saved_digest = memory.digest()
                digest = vm.saved_digest
        return GuestView(vm.spec.id, vm.state, vm.spec.memory_pages, digest, journal)

    # Creating and deleting

    def create_vm(
        self, spec: VmSpec, take_over: bool = False, lease_generation: int = 0, allow_shared_lun: bool = False
    ) -> VmView:
        """Persist a new VM stopped, or take over (`take_over`) its files on shared storage.

        Synchronous on purpose: with no await between the checks and the insert,
        two concurrent creations cannot both pass the checks. `allow_shared_lun` is an
        administrator's creation on the host itself, which may share a LUN.
        """
        if not take_over:  # a library server takes VMs over by SAN, creates none
            check_runs_vms(self.config, spec.label, "create")
        validate_spec(spec, self.config)
        self.vms.check_configuration(spec)
        self.vms.check_not_arriving(spec)
        existing = self.vms.hosted(spec.id)
        if existing is not None:
            if take_over and existing.lease_generation == lease_generation > 0:
                return existing.view()  # a retried take-over that already succeeded
            if not (take_over and self.vms.drop_if_fenced(existing)):
                raise AlreadyExists(f"VM {spec.id} already exists on host {self.config.name}")
        capacity = check_storage_visible(spec.storage, self.config)
        vm_dir = self.files.vm_dir(spec)
        if take_over:
            claim = take_over_files(self.files, self.config, spec, vm_dir, lease_generation)
        else:
            claim = claim_new(self.files, self.config, spec, vm_dir, capacity, allow_shared_lun)
        cpu = self._saved_cpu(spec, vm_dir) if claim.state is PowerState.SAVED else None
        return self.vms.insert(claim.spec, vm_dir, claim.state, claim.lease.generation, cpu).view()

    def _saved_cpu(self, spec: VmSpec, vm_dir: Path) -> GuestCpu | None:
        try:
            return decode_saved_state_with_cpu(spec.id, self.files.read_saved_state(vm_dir)).cpu
        except AgentError:
            return None  # a damaged image fails at restore, with its own sentence

    async def delete_vm(self, vm_id: str) -> None:
        vm = self.vms.operable(vm_id)
        self.vms.check_not_migrating(vm)  # at once, not after a move that holds the lock
        await _complete_even_if_abandoned(self._delete_locked(vm))

    async def _delete_locked(self, vm: HostedVm) -> None:
        async with vm.lock:
            self.vms.check_still_here(vm)
            self.vms.check_not_migrating(vm)
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
            self.vms.deleted(vm)

    # Power operations

    async def operate(self, vm_id: str, operation: Operation) -> VmView:
        vm = self.vms.operable(vm_id)
        return await _complete_even_if_abandoned(self._power.operate_locked(vm, operation))

    # Settings, compatibility and moves

    async def update_vm(self, vm_id: str, update: VmUpdate) -> VmView:
        return await update_settings(self.vms, vm_id, update)

    def compatibility(self, spec: VmSpec, cpu: GuestCpu | None) -> list[str]:
        """Every reason this host cannot take `spec` now; empty when it can."""
        return self.vms.compatibility(spec, cpu)

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
        migration = OutgoingMigration.prepare(request, self.vms, self._connect, self.crash_points)
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
        session = IncomingMigration(self.vms, self.crash_points)
        self.spawn(session.run(), "incoming-migration")
        return session

    def send_vm(self, request: TransferRequest) -> AsyncGenerator[TransferProgress, None]:
        """Start a network transfer of one of this host's VMs at rest; iterate for its progress.

        The checks run before anything is awaited; the transfer then runs on its own,
        whoever listens. A request naming a transfer of that VM under way follows it.
        """
        running = self.transfers.get(request.transfer_id)
        if running is not None and running.vm.spec.id == request.vm_id:
            return running.progress()
        if self.stopping:
            raise Unavailable(f"host {self.config.name} is stopping; it sends no VM now")
        transfer = OutgoingTransfer.prepare(request, self.vms, self._send_files)
        self.transfers[request.transfer_id] = transfer
        self.spawn(self._run_transfer(transfer), f"transfer-{request.transfer_id}")
        return transfer.progress()

    async def _run_transfer(self, transfer: OutgoingTransfer) -> None:
        try:
            await transfer.run()
        finally:
            if self.transfers.get(transfer.request.transfer_id) is transfer:
                del self.transfers[transfer.request.transfer_id]

    async def receive_vm(
        self, messages: AsyncIterator[TransferMessage], accepted: Callable[[], Awaitable[None]]
    ) -> VmView:
        """The destination side of a network transfer: the VM once it arrived whole.

        It runs in the caller's call: a source that goes away ends it, and nothing of
        the VM stays (app.transfer_in). `accepted` tells the source its offer was taken.
        """
        if self.stopping:
            raise Unavailable(f"host {self.config.name} is stopping; it takes no VM now")
        return await IncomingTransfer(self.vms).receive(messages, accepted)

    def convert_disk(self, vm_id: str, disk: StorageRef) -> AsyncGenerator[ConversionProgress, None]:
        """Convert a stopped VM's pass-through disk to a virtual disk; iterate for progress."""
        return convert_disk(self.vms, vm_id, disk)

    async def move_vm_storage(self, vm_id: str, storage: StorageRef) -> StorageMoveResult:
        vm = self.vms.operable(vm_id)
        return await _complete_even_if_abandoned(move_storage(self.vms, vm, storage))

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
            vm = load_registered(self.files, self.config, entry, self.vms.disks.disk_name)
            if vm is None:
                continue
            self.vms.recovered(vm)
            if vm.state is PowerState.STOPPED and entry.power_state in RESTART_ON_RECOVERY:
                to_start.append(vm)
        log.info("found %d VMs in the registry", len(self.vms.all()))
        for vm in to_start:
            log.info(
                "VM %s was %s when the agent stopped; starting it again",
                vm.label,
                self._registry_state(vm.spec.id, entries).value,
            )
            try:
                await self._power.power_on(vm)
            except AgentError as exc:
                log.error("VM %s cannot be started again: %s", vm.label, exc.message)
                if vm.state is PowerState.STOPPED and self.vms.hosted(vm.spec.id) is vm:
                    self.vms.set_state(vm, PowerState.FAILED, exc.message)

    @staticmethod
    def _registry_state(vm_id: str, entries: list[RegistryEntry]) -> PowerState:
        return next(e.power_state for e in entries if e.vm_id == vm_id)

    def begin_stop(self) -> None:
        """The agent is asked to stop: no network transfer starts from now on, either way."""
        self.stopping = True

    async def stop(self) -> None:
        """Stop every guest; registry states stay as they are so running VMs restart."""
        self.begin_stop()
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.wait(list(self._background))
        for vm in self.vms.all():
            await stop_guest(vm)
            if vm.journal is not None:
                vm.journal.close()
                vm.journal = None
        log.info("all guests stopped")

    # Helpers

    def _usage(self, storage: StorageRef, capacity_gb: int) -> StorageUsage:
        capacity = capacity_gb * GIB
        free = max(0, capacity - self.files.used_bytes(storage))
        return StorageUsage(storage.name, storage.kind, capacity, free)

"""The AgentService over gRPC: translates wire messages to core values and back.

Nothing is decided here. Requests become core values (a malformed one becomes an
InvalidArgument naming the field), the host backend does the work, and each
AgentError becomes `context.abort(status, sentence)` so that callers get a proper
status code and a human sentence, never a traceback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import Protocol, TypeVar

import grpc

from havm.contract.identity import Role, peer_identity
from havm.v1 import agent_pb2, agent_pb2_grpc, common_pb2
from node_agent.adapters.config_file import cpu_to_pb
from node_agent.adapters.grpc_host_admin import HostAdministrationPort, HostAdminServicer
from node_agent.adapters.migration_network import MigrationNetwork
from node_agent.adapters.transfer_messages import (
    conversion_progress_to_pb,
    transfer_message_from_pb,
    transfer_progress_to_pb,
    transfer_request_from_pb,
)
from node_agent.adapters.vm_messages import (
    STATES,
    STORAGE_TO_PB,
    cpu_from_pb,
    passthrough_from_pb,
    spec_from_pb,
    spec_to_pb,
    storage_from_pb,
    storage_to_pb,
    timestamp,
    vm_from_pb,
    vm_to_pb,
)
from node_agent.core.config import MAX_CHUNK_PAGES, Profile, ProfileTraits
from node_agent.core.cpu import GuestCpu
from node_agent.core.disk_conversion import ConversionProgress
from node_agent.core.errors import (
    AgentError,
    FailedPrecondition,
    InvalidArgument,
    MigrationFailure,
    PermissionDenied,
)
from node_agent.core.guest import PAGE_SIZE, GuestDevices, page_array
from node_agent.core.journal import JournalPosition
from node_agent.core.migration import (
    Commit,
    DeviceState,
    DiskChunk,
    MigrationPhase,
    MigrationProgress,
    MigrationRequest,
    Offer,
    PagesChunk,
    PeerReply,
    Reply,
    SourceMessage,
)
from node_agent.core.power import Operation
from node_agent.core.transfer import TransferMessage, TransferProgress, TransferRequest
from node_agent.core.views import GuestView, HostView, StorageUsage, VmView
from node_agent.core.vm import StorageRef, VmSpec
from node_agent.core.vm_devices import VmUpdate

log = logging.getLogger(__name__)
T = TypeVar("T")
U = TypeVar("U")  # an update of work under way
P = TypeVar("P")  # its message

# The largest message either end of a migration stream accepts: a chunk of the most
# pages a host may be configured to send, with room for the page list.
MAX_MESSAGE_BYTES = 2 * MAX_CHUNK_PAGES * PAGE_SIZE
# HTTP/2 tuning for a stream that carries hundreds of MiB a second on both ends of
# a migration: a window that holds several chunks, and frames of a whole page run,
# so the sender rarely waits for window updates.
BULK_TRANSFER_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.http2.lookahead_bytes", MAX_MESSAGE_BYTES),
    ("grpc.http2.max_frame_size", 1 << 20),
]

_PHASES = {
    MigrationPhase.PREPARING: agent_pb2.MIGRATION_PHASE_PREPARING,
    MigrationPhase.DISK_COPY: agent_pb2.MIGRATION_PHASE_DISK_COPY,
    MigrationPhase.PRE_COPY: agent_pb2.MIGRATION_PHASE_PRE_COPY,
    MigrationPhase.BLACKOUT: agent_pb2.MIGRATION_PHASE_BLACKOUT,
    MigrationPhase.COMPLETED: agent_pb2.MIGRATION_PHASE_COMPLETED,
}
_REPLIES = {
    Reply.ACCEPTED: agent_pb2.MIGRATION_REPLY_ACCEPTED,
    Reply.READY: agent_pb2.MIGRATION_REPLY_READY,
    Reply.RESUMED: agent_pb2.MIGRATION_REPLY_RESUMED,
}
_REPLIES_FROM_PB = {v: k for k, v in _REPLIES.items()}
_PROFILES = {
    Profile.HYPERV_2008: common_pb2.PROFILE_HYPERV_2008,
    Profile.HYPERV_2008R2: common_pb2.PROFILE_HYPERV_2008R2,
    Profile.ESX: common_pb2.PROFILE_ESX,
    Profile.LIBRARY: common_pb2.PROFILE_LIBRARY,
}
_OPERATIONS = {
    agent_pb2.VM_OPERATION_START: Operation.START,
    agent_pb2.VM_OPERATION_SHUTDOWN: Operation.SHUTDOWN,
    agent_pb2.VM_OPERATION_TURN_OFF: Operation.TURN_OFF,
    agent_pb2.VM_OPERATION_SAVE: Operation.SAVE,
    agent_pb2.VM_OPERATION_RESTORE: Operation.RESTORE,
    agent_pb2.VM_OPERATION_PAUSE: Operation.PAUSE,
    agent_pb2.VM_OPERATION_RESUME: Operation.RESUME,
}


class HostBackend(Protocol):
    """What the servicer needs from the running host."""

    def host_view(self) -> HostView: ...
    def list_vms(self) -> list[VmView]: ...
    def get_vm(self, vm_id: str) -> VmView: ...
    def create_vm(
        self, spec: VmSpec, take_over: bool = False, lease_generation: int = 0, allow_shared_lun: bool = False
    ) -> VmView: ...
    def note_management_call(self) -> None: ...
    def let_go_stale_copies(self) -> list[str]: ...
    async def operate(self, vm_id: str, operation: Operation) -> VmView: ...
    async def delete_vm(self, vm_id: str) -> None: ...
    async def guest_status(self, vm_id: str) -> GuestView: ...
    async def update_vm(self, vm_id: str, update: VmUpdate) -> VmView: ...
    def compatibility(self, spec: VmSpec, cpu: GuestCpu | None) -> list[str]: ...
    def migrate_vm(self, request: MigrationRequest) -> AsyncGenerator[MigrationProgress, None]: ...
    def receive_migration(self) -> MigrationSession: ...
    @property
    def migration_network(self) -> MigrationNetwork: ...
    async def move_vm_storage(self, vm_id: str, storage: StorageRef) -> StorageMoveView: ...
    def convert_disk(self, vm_id: str, disk: StorageRef) -> AsyncGenerator[ConversionProgress, None]: ...
    def send_vm(self, request: TransferRequest) -> AsyncGenerator[TransferProgress, None]: ...
    async def receive_vm(
        self, messages: AsyncIterator[TransferMessage], accepted: Callable[[], Awaitable[None]]
    ) -> VmView: ...
    @property
    def administration(self) -> HostAdministrationPort: ...


class MigrationSession(Protocol):
    """The destination side of one migration stream, as the host runs it."""

    async def deliver(self, message: SourceMessage) -> None: ...
    def source_closed(self, problem: AgentError | None = None) -> None: ...
    def replies(self) -> AsyncIterator[PeerReply]: ...
    @property
    def error(self) -> AgentError | None: ...


class StorageMoveView(Protocol):
    """Read-only, so that a frozen dataclass is one."""

    @property
    def vm(self) -> VmView: ...
    @property
    def bytes_copied(self) -> int: ...
    @property
    def duration_ms(self) -> int: ...
    @property
    def blackout_ms(self) -> int: ...


def migration_request_from_pb(pb: agent_pb2.AgentServiceMigrateVmRequest) -> MigrationRequest:
    return MigrationRequest(
        vm_id=pb.vm_id,
        migration_id=pb.migration_id,
        destination_host=pb.destination_host,
        destination_address=pb.destination_address,
        lease_generation=pb.lease_generation,
        max_passes=pb.max_passes,
        blackout_budget_ms=pb.blackout_budget_ms,
        bandwidth_mb_per_s=pb.bandwidth_mb_per_s,
        storage=storage_from_pb(pb.storage, "storage") if pb.HasField("storage") else None,
        reattach=pb.reattach,
    )


def progress_to_pb(progress: MigrationProgress) -> agent_pb2.AgentServiceMigrateVmResponse:
    pb = agent_pb2.AgentServiceMigrateVmResponse(
        phase=_PHASES[progress.phase],
        bytes_sent=progress.bytes_sent,
        bytes_remaining=progress.bytes_remaining,
        mb_per_s=progress.mb_per_s,
        duration_ms=progress.duration_ms,
        blackout_ms=progress.blackout_ms,
        memory_digest=progress.memory_digest,
        resumed_digest=progress.resumed_digest,
    )
    # `pass` is a Python keyword: the field is set by name.
    setattr(pb, "pass", progress.pass_number)
    if progress.vm is not None:
        pb.vm.CopyFrom(vm_to_pb(progress.vm))
    return pb


def source_message_to_pb(message: SourceMessage) -> agent_pb2.AgentServiceReceiveMigrationRequest:
    Request = agent_pb2.AgentServiceReceiveMigrationRequest
    if isinstance(message, PagesChunk):
        return Request(
            pages=agent_pb2.MemoryPages(pages=message.pages, data=message.data, crc32=message.crc32)
        )
    if isinstance(message, DiskChunk):
        return Request(
            disk=agent_pb2.DiskExtent(offset=message.offset, data=message.data, crc32=message.crc32)
        )
    if isinstance(message, Offer):
        cpu = message.cpu
        return Request(
            offer=agent_pb2.MigrationOffer(
                migration_id=message.migration_id,
                source_host=message.source_host,
                spec=spec_to_pb(message.spec),
                lease_generation=message.lease_generation,
                cpu_vendor=cpu.vendor if cpu is not None else "",
                cpu_features=list(cpu.features) if cpu is not None else [],
                copy_disk=message.copy_disk,
                memory_pages=message.memory_pages,
                source_storage=(
                    storage_to_pb(message.source_storage) if message.source_storage is not None else None
                ),
            )
        )
    if isinstance(message, DeviceState):
        devices = message.devices
        return Request(
            device_state=agent_pb2.DeviceState(
                journal_last_seq=devices.journal.last_seq,
                journal_writes=devices.journal.writes,
                page_chooser_counter=devices.chooser_counter,
                dirty_carry=devices.dirty_carry,
                journal_carry=devices.journal_carry,
                memory_digest=message.memory_digest,
            )
        )
    return Request(commit=agent_pb2.MigrationCommit())


def source_message_from_pb(pb: agent_pb2.AgentServiceReceiveMigrationRequest) -> SourceMessage:
    which = pb.WhichOneof("message")
    if which == "pages":
        return PagesChunk(page_array(pb.pages.pages), pb.pages.data, pb.pages.crc32)
    if which == "disk":
        return DiskChunk(pb.disk.offset, pb.disk.data, pb.disk.crc32)
    if which == "offer":
        offer = pb.offer
        if not offer.HasField("spec"):
            raise InvalidArgument("offer.spec: is required")
        return Offer(
            migration_id=offer.migration_id,
            source_host=offer.source_host,
            spec=spec_from_pb(offer.spec),
            lease_generation=offer.lease_generation,
            cpu=cpu_from_pb(offer.cpu_vendor, offer.cpu_features),
            copy_disk=offer.copy_disk,
            memory_pages=offer.memory_pages,
            source_storage=(
                storage_from_pb(offer.source_storage, "offer.source_storage")
                if offer.HasField("source_storage")
                else None
            ),
        )
    if which == "device_state":
        state = pb.device_state
        devices = GuestDevices(
            JournalPosition(state.journal_last_seq, state.journal_writes),
            state.page_chooser_counter,
            state.dirty_carry,
            state.journal_carry,
        )
        return DeviceState(devices, state.memory_digest)
    if which == "commit":
        return Commit()
    raise InvalidArgument("message: one of offer, pages, disk, device_state or commit is required")


def reply_to_pb(reply: PeerReply) -> agent_pb2.AgentServiceReceiveMigrationResponse:
    pb = agent_pb2.AgentServiceReceiveMigrationResponse(
        reply=_REPLIES[reply.reply], memory_digest=reply.memory_digest
    )
    if reply.vm is not None:
        pb.vm.CopyFrom(vm_to_pb(reply.vm))
    return pb


def reply_from_pb(pb: agent_pb2.AgentServiceReceiveMigrationResponse) -> PeerReply:
    reply = _REPLIES_FROM_PB.get(pb.reply)
    if reply is None:
        raise InvalidArgument(f"reply: unknown migration reply {pb.reply}")
    vm = vm_from_pb(pb.vm) if pb.HasField("vm") else None
    return PeerReply(reply, vm, pb.memory_digest)


def _volume_to_pb(usage: StorageUsage) -> common_pb2.SharedVolume:
    return common_pb2.SharedVolume(
        name=usage.name,
        kind=STORAGE_TO_PB[usage.kind],
        capacity_bytes=usage.capacity_bytes,
        free_bytes=usage.free_bytes,
    )


def capabilities_to_pb(traits: ProfileTraits) -> common_pb2.HostCapabilities:
    """The agent's row for its profile, as the manager learns it with the inventory."""
    return common_pb2.HostCapabilities(
        live_migration=traits.live_migration,
        quick_migration=traits.quick_migration,
        csv=traits.csv,
        network_kind=(
            common_pb2.NETWORK_KIND_PORT_GROUP
            if traits.port_groups
            else common_pb2.NETWORK_KIND_VIRTUAL_NETWORK
        ),
        library_server=traits.library_server,
    )


def host_to_pb(view: HostView) -> common_pb2.HostInfo:
    config = view.config
    capabilities = capabilities_to_pb(config.profile.traits)
    return common_pb2.HostInfo(
        name=config.name,
        cluster=config.cluster or "",
        profile=_PROFILES[config.profile],
        cpu=cpu_to_pb(config.cpu),
        memory_mb=config.memory_mb,
        memory_free_mb=view.memory_free_mb,
        disks=[
            common_pb2.LocalDisk(name=d.name, capacity_bytes=d.capacity_bytes, free_bytes=d.free_bytes)
            for d in view.disks
        ],
        networks=[
            common_pb2.Network(
                name=n.name, kind=capabilities.network_kind, bound_to=n.bound_to, vlan_id=n.vlan_id
            )
            for n in config.networks
        ],
        volumes=[_volume_to_pb(v) for v in view.volumes],
        boot_id=view.boot_id,
        started_at=timestamp(view.started_at),
        capabilities=capabilities,
    )


def guest_to_pb(view: GuestView) -> agent_pb2.AgentServiceGetGuestStatusResponse:
    return agent_pb2.AgentServiceGetGuestStatusResponse(
        vm_id=view.vm_id,
        state=STATES[view.state],
        memory_pages=view.memory_pages,
        memory_digest=view.memory_digest,
        journal_last_seq=view.journal.last_seq,
        journal_writes=view.journal.writes,
    )


# Asks the agent to leave its cluster (Shutdown): takes the reason, returns once the
# leave is under way, raises an AgentError when the agent may not leave now.
Leave = Callable[[str], None]


# The initial metadata ReceiveVm answers once it took the offer: the source sends no
# chunk before (a refusal then ends a call with nothing in flight).
TRANSFER_ACCEPTED_KEY = "havm-transfer-accepted"


# The trailing metadata a failed MigrateVm carries: the kind of failure (agent.proto).
MIGRATION_FAILURE_KEY = "havm-migration-failure"
_FAILURES = {
    MigrationFailure.NOT_CONVERGED: agent_pb2.MIGRATION_FAILURE_NOT_CONVERGED,
    MigrationFailure.DESTINATION_REFUSED: agent_pb2.MIGRATION_FAILURE_DESTINATION_REFUSED,
    MigrationFailure.PEER_GONE: agent_pb2.MIGRATION_FAILURE_PEER_GONE,
    MigrationFailure.FENCED: agent_pb2.MIGRATION_FAILURE_FENCED,
}


def failure_metadata(exc: AgentError) -> tuple[tuple[str, str], ...]:
    if exc.migration_failure is None:
        return ()
    return ((MIGRATION_FAILURE_KEY, agent_pb2.MigrationFailure.Name(_FAILURES[exc.migration_failure])),)


class AgentServicer(agent_pb2_grpc.AgentServiceServicer, HostAdminServicer):
    """AgentService on top of a host backend, and the same host's HostAdminService: one
    object serves both, whichever server registers it (grpc_server, a scenario's)."""

    def __init__(self, host: HostBackend, leave: Leave | None = None) -> None:
        HostAdminServicer.__init__(self, host.administration, host.host_view, host_to_pb, vm_to_pb)
        self._host = host
        self._leave = leave

    async def _call(self, context: grpc.aio.ServicerContext, work: Callable[[], Awaitable[T]]) -> T:
        # Any call, even a failing one, proves the management path works.
        self._host.note_management_call()
        try:
            return await work()
        except AgentError as exc:
            await context.abort(grpc.StatusCode[exc.code], exc.message)
        except Exception:
            log.exception("unexpected error in an AgentService call")
            await context.abort(grpc.StatusCode.INTERNAL, "the agent hit an unexpected error; see its log")
        raise AssertionError("context.abort returns only by raising")

    async def _stream(
        self,
        context: grpc.aio.ServicerContext,
        updates: Callable[[], AsyncGenerator[U, None]],
        to_pb: Callable[[U], P],
        what: str,
    ) -> AsyncIterator[P]:
        """A call that streams the progress of work running on the host (a migration, a
        transfer, a conversion): each update as its message, the work's refusal or failure
        as the call's status. The updates are closed at once when the caller goes away: an
        open iterator is a listener the work keeps feeding."""
        self._host.note_management_call()
        try:
            async with aclosing(updates()) as stream:
                async for update in stream:
                    yield to_pb(update)
        except AgentError as exc:
            await context.abort(
                grpc.StatusCode[exc.code], exc.message, trailing_metadata=failure_metadata(exc)
            )
        except Exception:
            log.exception("unexpected error in %s", what)
            await context.abort(grpc.StatusCode.INTERNAL, "the agent hit an unexpected error; see its log")

    async def GetInventory(
        self, request: agent_pb2.AgentServiceGetInventoryRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.AgentServiceGetInventoryResponse:
        async def work() -> agent_pb2.AgentServiceGetInventoryResponse:
            # A copy another host took over must not be reported as this host's.
            self._host.let_go_stale_copies()
            return agent_pb2.AgentServiceGetInventoryResponse(
                host=host_to_pb(self._host.host_view()),
                vms=[vm_to_pb(v) for v in self._host.list_vms()],
            )

        return await self._call(context, work)

    async def CreateVm(
        self, request: agent_pb2.AgentServiceCreateVmRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.AgentServiceCreateVmResponse:
        async def work() -> agent_pb2.AgentServiceCreateVmResponse:
            if not request.HasField("spec"):
                raise InvalidArgument("spec: is required")
            caller = peer_identity(context)
            if request.take_over and caller is not None and caller.role is not Role.MANAGER:
                # The lease generation of a take-over is the manager's to issue: an
                # administrator turning a VM over to this host would run it twice.
                raise PermissionDenied(
                    f"taking VM {request.spec.name} over is ordered by the manager only; "
                    f"{caller.describe()} may create VMs here but not take one over"
                )
            vm = self._host.create_vm(
                spec_from_pb(request.spec),
                request.take_over,
                request.lease_generation,
                allow_shared_lun=request.allow_shared_lun,
            )
            return agent_pb2.AgentServiceCreateVmResponse(vm=vm_to_pb(vm))

        return await self._call(context, work)

    async def GetVm(
        self, request: agent_pb2.AgentServiceGetVmRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.AgentServiceGetVmResponse:
        async def work() -> agent_pb2.AgentServiceGetVmResponse:
            return agent_pb2.AgentServiceGetVmResponse(vm=vm_to_pb(self._host.get_vm(request.vm_id)))

        return await self._call(context, work)

    async def OperateVm(
        self, request: agent_pb2.AgentServiceOperateVmRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.AgentServiceOperateVmResponse:
        async def work() -> agent_pb2.AgentServiceOperateVmResponse:
            operation = _OPERATIONS.get(request.operation)
            if operation is None:
                allowed = ", ".join(agent_pb2.VmOperation.Name(k) for k in _OPERATIONS)
                raise InvalidArgument(f"operation: must be one of {allowed}")
            vm = await self._host.operate(request.vm_id, operation)
            return agent_pb2.AgentServiceOperateVmResponse(vm=vm_to_pb(vm))

        return await self._call(context, work)

    async def DeleteVm(
        self, request: agent_pb2.AgentServiceDeleteVmRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.AgentServiceDeleteVmResponse:
        async def work() -> agent_pb2.AgentServiceDeleteVmResponse:
            await self._host.delete_vm(request.vm_id)
            return agent_pb2.AgentServiceDeleteVmResponse()

        return await self._call(context, work)

    async def GetGuestStatus(
        self, request: agent_pb2.AgentServiceGetGuestStatusRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.AgentServiceGetGuestStatusResponse:
        async def work() -> agent_pb2.AgentServiceGetGuestStatusResponse:
            return guest_to_pb(await self._host.guest_status(request.vm_id))

        return await self._call(context, work)

    async def UpdateVm(
        self, request: agent_pb2.AgentServiceUpdateVmRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.AgentServiceUpdateVmResponse:
        async def work() -> agent_pb2.AgentServiceUpdateVmResponse:
            update = VmUpdate(
                processor_compatibility=(
                    request.processor_compatibility if request.HasField("processor_compatibility") else None
                ),
                iso_image=request.iso_image if request.HasField("iso_image") else None,
                passthrough_disks=(
                    passthrough_from_pb(request.passthrough_disks, "passthrough_disks")
                    if request.replace_passthrough_disks
                    else None
                ),
            )
            if update.passthrough_disks is None and request.passthrough_disks:
                raise InvalidArgument(
                    "passthrough_disks: set replace_passthrough_disks to make them "
                    "the VM's pass-through disks"
                )
            vm = await self._host.update_vm(request.vm_id, update)
            return agent_pb2.AgentServiceUpdateVmResponse(vm=vm_to_pb(vm))

        return await self._call(context, work)

    async def CheckCompatibility(
        self, request: agent_pb2.AgentServiceCheckCompatibilityRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.AgentServiceCheckCompatibilityResponse:
        async def work() -> agent_pb2.AgentServiceCheckCompatibilityResponse:
            if not request.HasField("spec"):
                raise InvalidArgument("spec: is required")
            cpu = cpu_from_pb(request.cpu_vendor, request.cpu_features)
            reasons = self._host.compatibility(spec_from_pb(request.spec), cpu)
            return agent_pb2.AgentServiceCheckCompatibilityResponse(compatible=not reasons, reasons=reasons)

        return await self._call(context, work)

    async def MoveVmStorage(
        self, request: agent_pb2.AgentServiceMoveVmStorageRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.AgentServiceMoveVmStorageResponse:
        async def work() -> agent_pb2.AgentServiceMoveVmStorageResponse:
            if not request.HasField("storage"):
                raise InvalidArgument("storage: is required")
            result = await self._host.move_vm_storage(
                request.vm_id, storage_from_pb(request.storage, "storage")
            )
            return agent_pb2.AgentServiceMoveVmStorageResponse(
                vm=vm_to_pb(result.vm),
                bytes_copied=result.bytes_copied,
                duration_ms=result.duration_ms,
                blackout_ms=result.blackout_ms,
            )

        return await self._call(context, work)

    async def ConvertDisk(
        self, request: agent_pb2.AgentServiceConvertDiskRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[agent_pb2.AgentServiceConvertDiskResponse]:
        def conversion() -> AsyncGenerator[ConversionProgress, None]:
            if not request.HasField("disk"):
                raise InvalidArgument("disk: is required")
            return self._host.convert_disk(request.vm_id, storage_from_pb(request.disk, "disk"))

        async for reply in self._stream(context, conversion, conversion_progress_to_pb, "a disk conversion"):
            yield reply

    async def Shutdown(
        self, request: agent_pb2.AgentServiceShutdownRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.AgentServiceShutdownResponse:
        async def work() -> agent_pb2.AgentServiceShutdownResponse:
            if self._leave is None:
                raise FailedPrecondition(
                    "this agent runs inside another program, which decides when it stops"
                )
            self._leave(request.reason)
            return agent_pb2.AgentServiceShutdownResponse()

        return await self._call(context, work)

    async def MigrateVm(
        self, request: agent_pb2.AgentServiceMigrateVmRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[agent_pb2.AgentServiceMigrateVmResponse]:
        def migration() -> AsyncGenerator[MigrationProgress, None]:
            return self._host.migrate_vm(migration_request_from_pb(request))

        async for reply in self._stream(context, migration, progress_to_pb, "a live migration"):
            yield reply

    async def ReceiveMigration(
        self,
        request_iterator: AsyncIterator[agent_pb2.AgentServiceReceiveMigrationRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[agent_pb2.AgentServiceReceiveMigrationResponse]:
        session = self._host.receive_migration()

        refused: list[grpc.aio.AbortError] = []

        async def pump() -> None:
            problem: AgentError | None = None
            try:
                async for request in request_iterator:
                    # This host's migration network cut: what arrives is not taken in.
                    await network.wait_connected()
                    await session.deliver(source_message_from_pb(request))
            except AgentError as exc:
                problem = exc
            except grpc.aio.AbortError as exc:  # the call was refused (a request not decodable)
                refused.append(exc)
            except Exception:  # the stream broke: the session judges what that means
                pass
            session.source_closed(problem)

        network = self._host.migration_network
        reader = asyncio.create_task(pump())
        try:
            async for reply in session.replies():
                await network.wait_connected()
                yield reply_to_pb(reply)
        finally:
            reader.cancel()
            session.source_closed()
        if refused:
            raise refused[0]  # its status is set already; a second abort is an error
        if session.error is not None:
            await network.wait_connected()  # not even the refusal crosses a cut network
            await context.abort(grpc.StatusCode[session.error.code], session.error.message)

    async def SendVm(
        self, request: agent_pb2.AgentServiceSendVmRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[agent_pb2.AgentServiceSendVmResponse]:
        def transfer() -> AsyncGenerator[TransferProgress, None]:
            return self._host.send_vm(transfer_request_from_pb(request))  # runs on without a caller

        async for reply in self._stream(context, transfer, transfer_progress_to_pb, "a network transfer"):
            yield reply

    async def ReceiveVm(
        self,
        request_iterator: AsyncIterator[agent_pb2.AgentServiceReceiveVmRequest],
        context: grpc.aio.ServicerContext,
    ) -> agent_pb2.AgentServiceReceiveVmResponse:
        network = self._host.migration_network

        async def messages() -> AsyncGenerator[TransferMessage, None]:
            async for request in request_iterator:
                # This host's migration network cut: what arrives is not taken in.
                await network.wait_connected()
                yield transfer_message_from_pb(request)

        async def accepted() -> None:
            await network.wait_connected()
            await context.send_initial_metadata(((TRANSFER_ACCEPTED_KEY, "1"),))

        try:
            async with aclosing(messages()) as stream:
                vm = await self._host.receive_vm(stream, accepted)
        except grpc.aio.AbortError:
            raise  # refused already (a request not decodable): its status is set
        except AgentError as exc:
            await network.wait_connected()  # not even the refusal crosses a cut network
            await context.abort(grpc.StatusCode[exc.code], exc.message)
        except Exception:
            log.exception("unexpected error in an incoming network transfer")
            await context.abort(grpc.StatusCode.INTERNAL, "the agent hit an unexpected error; see its log")
        await network.wait_connected()
        return agent_pb2.AgentServiceReceiveVmResponse(vm=vm_to_pb(vm))

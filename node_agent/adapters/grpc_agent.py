"""The AgentService over gRPC: translates wire messages to core values and back.

Nothing is decided here. Requests become core values (a malformed one becomes an
InvalidArgument naming the field), the host backend does the work, and each
AgentError becomes `context.abort(status, sentence)` so that callers get a proper
status code and a human sentence, never a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from havm.v1 import agent_pb2, agent_pb2_grpc, common_pb2
from node_agent.core.config import Profile
from node_agent.core.errors import AgentError, InvalidArgument
from node_agent.core.power import Operation, PowerState
from node_agent.core.views import GuestView, HostView, StorageUsage, VmView
from node_agent.core.vm import StorageKind, StorageRef, VmSpec, Workload

log = logging.getLogger(__name__)
T = TypeVar("T")

_STATES = {
    PowerState.STOPPED: common_pb2.VM_STATE_STOPPED,
    PowerState.STARTING: common_pb2.VM_STATE_STARTING,
    PowerState.RUNNING: common_pb2.VM_STATE_RUNNING,
    PowerState.PAUSED: common_pb2.VM_STATE_PAUSED,
    PowerState.SAVING: common_pb2.VM_STATE_SAVING,
    PowerState.SAVED: common_pb2.VM_STATE_SAVED,
    PowerState.FAILED: common_pb2.VM_STATE_FAILED,
}
_STORAGE_TO_PB = {
    StorageKind.LOCAL_DISK: common_pb2.STORAGE_KIND_LOCAL_DISK,
    StorageKind.CSV: common_pb2.STORAGE_KIND_CSV,
    StorageKind.LUN: common_pb2.STORAGE_KIND_LUN,
}
_STORAGE_FROM_PB = {v: k for k, v in _STORAGE_TO_PB.items()}
_PROFILES = {
    Profile.HYPERV_2008: common_pb2.PROFILE_HYPERV_2008,
    Profile.HYPERV_2008R2: common_pb2.PROFILE_HYPERV_2008R2,
    Profile.ESX: common_pb2.PROFILE_ESX,
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
    def create_vm(self, spec: VmSpec, take_over: bool = False, lease_generation: int = 0) -> VmView: ...
    def note_management_call(self) -> None: ...
    async def operate(self, vm_id: str, operation: Operation) -> VmView: ...
    async def delete_vm(self, vm_id: str) -> None: ...
    async def guest_status(self, vm_id: str) -> GuestView: ...


def _timestamp(unix_s: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(unix_s * 1e9))
    return ts


def spec_from_pb(pb: common_pb2.VmSpec) -> VmSpec:
    kind = _STORAGE_FROM_PB.get(pb.storage.kind)
    if kind is None:
        raise InvalidArgument("spec.storage.kind: must be LOCAL_DISK, CSV or LUN")
    workload = None
    if pb.HasField("workload"):
        # A rate the caller left unset takes this host's default; 0 is a real rate.
        default = Workload()
        workload = Workload(
            pb.workload.dirty_rate_mb_per_s
            if pb.workload.HasField("dirty_rate_mb_per_s")
            else default.dirty_rate_mb_per_s,
            pb.workload.journal_writes_per_s
            if pb.workload.HasField("journal_writes_per_s")
            else default.journal_writes_per_s,
        )
    return VmSpec(
        id=pb.id,
        name=pb.name,
        memory_mb=pb.memory_mb,
        cpus=pb.cpus,
        disk_gb=pb.disk_gb,
        storage=StorageRef(kind, pb.storage.name),
        networks=tuple(pb.networks),
        highly_available=pb.highly_available,
        workload=workload,
    )


def spec_to_pb(spec: VmSpec) -> common_pb2.VmSpec:
    pb = common_pb2.VmSpec(
        id=spec.id,
        name=spec.name,
        memory_mb=spec.memory_mb,
        cpus=spec.cpus,
        disk_gb=spec.disk_gb,
        storage=common_pb2.StorageLocation(kind=_STORAGE_TO_PB[spec.storage.kind], name=spec.storage.name),
        networks=list(spec.networks),
        highly_available=spec.highly_available,
    )
    if spec.workload is not None:
        pb.workload.CopyFrom(
            common_pb2.GuestWorkload(
                dirty_rate_mb_per_s=spec.workload.dirty_rate_mb_per_s,
                journal_writes_per_s=spec.workload.journal_writes_per_s,
            )
        )
    return pb


def vm_to_pb(vm: VmView) -> common_pb2.VmRuntime:
    return common_pb2.VmRuntime(
        spec=spec_to_pb(vm.spec),
        state=_STATES[vm.state],
        reason=vm.reason,
        state_since=_timestamp(vm.state_since),
        lease_generation=vm.lease_generation,
    )


def _volume_to_pb(usage: StorageUsage) -> common_pb2.SharedVolume:
    return common_pb2.SharedVolume(
        name=usage.name,
        kind=_STORAGE_TO_PB[usage.kind],
        capacity_bytes=usage.capacity_bytes,
        free_bytes=usage.free_bytes,
    )


def host_to_pb(view: HostView) -> common_pb2.HostInfo:
    config = view.config
    network_kind = (
        common_pb2.NETWORK_KIND_PORT_GROUP
        if config.profile is Profile.ESX
        else common_pb2.NETWORK_KIND_VIRTUAL_NETWORK
    )
    return common_pb2.HostInfo(
        name=config.name,
        cluster=config.cluster or "",
        profile=_PROFILES[config.profile],
        cpu=common_pb2.Cpu(
            vendor=config.cpu.vendor,
            model=config.cpu.model,
            features=list(config.cpu.features),
            cores=config.cpu.cores,
            mhz=config.cpu.mhz,
        ),
        memory_mb=config.memory_mb,
        memory_free_mb=view.memory_free_mb,
        disks=[
            common_pb2.LocalDisk(name=d.name, capacity_bytes=d.capacity_bytes, free_bytes=d.free_bytes)
            for d in view.disks
        ],
        networks=[
            common_pb2.Network(name=n.name, kind=network_kind, bound_to=n.bound_to, vlan_id=n.vlan_id)
            for n in config.networks
        ],
        volumes=[_volume_to_pb(v) for v in view.volumes],
        boot_id=view.boot_id,
        started_at=_timestamp(view.started_at),
    )


def guest_to_pb(view: GuestView) -> agent_pb2.AgentServiceGetGuestStatusResponse:
    return agent_pb2.AgentServiceGetGuestStatusResponse(
        vm_id=view.vm_id,
        state=_STATES[view.state],
        memory_pages=view.memory_pages,
        memory_digest=view.memory_digest,
        journal_last_seq=view.journal.last_seq,
        journal_writes=view.journal.writes,
    )


class AgentServicer(agent_pb2_grpc.AgentServiceServicer):
    """AgentService on top of a host backend."""

    def __init__(self, host: HostBackend) -> None:
        self._host = host

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

    async def GetInventory(
        self, request: agent_pb2.AgentServiceGetInventoryRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.AgentServiceGetInventoryResponse:
        async def work() -> agent_pb2.AgentServiceGetInventoryResponse:
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
            vm = self._host.create_vm(spec_from_pb(request.spec), request.take_over, request.lease_generation)
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

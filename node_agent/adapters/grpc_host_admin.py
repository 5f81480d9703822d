"""HostAdminService over gRPC: an administrator's changes to the host, translated.

As in grpc_agent, nothing is decided here: requests become core values (a malformed
one an InvalidArgument naming the field), app.host_admin applies them, and each
AgentError becomes `context.abort(status, sentence)`. Every answer about the host
carries its new description, built as GetInventory builds it; every answer about a VM's
cluster group, the VM's runtime.

A call here is not the manager's: it does not count as a sign of a live management
path (the isolation watch goes by AgentService calls only).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

import grpc

from havm.v1 import agent_pb2, agent_pb2_grpc, common_pb2
from node_agent.adapters.vm_messages import resource_from_pb
from node_agent.core.config import NetworkSpec, VolumeKind, VolumeSpec
from node_agent.core.errors import AgentError, InvalidArgument
from node_agent.core.host_changes import NetworkUpdate
from node_agent.core.views import HostView, VmView
from node_agent.core.vm import ClusterResource

log = logging.getLogger(__name__)
T = TypeVar("T")
GIB = 1024**3

_VOLUME_KINDS = {common_pb2.STORAGE_KIND_CSV: VolumeKind.CSV, common_pb2.STORAGE_KIND_LUN: VolumeKind.LUN}


class HostAdministrationPort(Protocol):
    """What the servicer needs from the host's administration (app.host_admin)."""

    def add_network(self, network: NetworkSpec) -> tuple[VmView, ...]: ...
    def remove_network(self, name: str) -> tuple[VmView, ...]: ...
    def update_network(self, name: str, update: NetworkUpdate) -> tuple[VmView, ...]: ...
    def add_volume(self, volume: VolumeSpec) -> None: ...
    def remove_volume(self, name: str, kind: VolumeKind | None) -> None: ...
    async def add_cluster_resource(self, vm_id: str, resource: ClusterResource) -> VmView: ...
    async def remove_cluster_resource(self, vm_id: str, name: str) -> VmView: ...


class HostAdminServicer(agent_pb2_grpc.HostAdminServiceServicer):
    """HostAdminService on top of the host's administration.

    AgentServicer is one too, so that whatever serves a host's AgentServicer can also
    serve this service with the same object.
    """

    def __init__(
        self,
        administration: HostAdministrationPort,
        describe: Callable[[], HostView],
        host_to_pb: Callable[[HostView], common_pb2.HostInfo],
        vm_to_pb: Callable[[VmView], common_pb2.VmRuntime],
    ) -> None:
        self._administration = administration
        self._describe = describe
        self._host_to_pb = host_to_pb
        self._vm_to_pb = vm_to_pb

    async def _admin_call(self, context: grpc.aio.ServicerContext, work: Callable[[], T]) -> T:
        try:
            return work()
        except AgentError as exc:
            await context.abort(grpc.StatusCode[exc.code], exc.message)
        except Exception:
            log.exception("unexpected error in a HostAdminService call")
            await context.abort(grpc.StatusCode.INTERNAL, "the agent hit an unexpected error; see its log")
        raise AssertionError("context.abort returns only by raising")

    async def _admin_vm_call(
        self, context: grpc.aio.ServicerContext, work: Callable[[], Awaitable[common_pb2.VmRuntime]]
    ) -> common_pb2.VmRuntime:
        """A change to one VM: it waits for the VM's lock, so it is awaited."""
        try:
            return await work()
        except AgentError as exc:
            await context.abort(grpc.StatusCode[exc.code], exc.message)
        except Exception:
            log.exception("unexpected error in a HostAdminService call")
            await context.abort(grpc.StatusCode.INTERNAL, "the agent hit an unexpected error; see its log")
        raise AssertionError("context.abort returns only by raising")

    def _host_info(self) -> common_pb2.HostInfo:
        return self._host_to_pb(self._describe())

    async def AddNetwork(
        self, request: agent_pb2.HostAdminServiceAddNetworkRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.HostAdminServiceAddNetworkResponse:
        def work() -> agent_pb2.HostAdminServiceAddNetworkResponse:
            if not request.HasField("network"):
                raise InvalidArgument("network: is required")
            net = request.network
            self._administration.add_network(NetworkSpec(net.name, net.bound_to, net.vlan_id))
            return agent_pb2.HostAdminServiceAddNetworkResponse(host=self._host_info())

        return await self._admin_call(context, work)

    async def RemoveNetwork(
        self, request: agent_pb2.HostAdminServiceRemoveNetworkRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.HostAdminServiceRemoveNetworkResponse:
        def work() -> agent_pb2.HostAdminServiceRemoveNetworkResponse:
            disconnected = self._administration.remove_network(request.name)
            return agent_pb2.HostAdminServiceRemoveNetworkResponse(
                host=self._host_info(), disconnected_vms=[self._vm_to_pb(vm) for vm in disconnected]
            )

        return await self._admin_call(context, work)

    async def UpdateNetwork(
        self, request: agent_pb2.HostAdminServiceUpdateNetworkRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.HostAdminServiceUpdateNetworkResponse:
        def work() -> agent_pb2.HostAdminServiceUpdateNetworkResponse:
            update = NetworkUpdate(
                new_name=request.new_name if request.HasField("new_name") else None,
                bound_to=request.bound_to if request.HasField("bound_to") else None,
                vlan_id=request.vlan_id if request.HasField("vlan_id") else None,
            )
            disconnected = self._administration.update_network(request.name, update)
            return agent_pb2.HostAdminServiceUpdateNetworkResponse(
                host=self._host_info(), disconnected_vms=[self._vm_to_pb(vm) for vm in disconnected]
            )

        return await self._admin_call(context, work)

    async def AddVolume(
        self, request: agent_pb2.HostAdminServiceAddVolumeRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.HostAdminServiceAddVolumeResponse:
        def work() -> agent_pb2.HostAdminServiceAddVolumeResponse:
            if not request.HasField("volume"):
                raise InvalidArgument("volume: is required")
            volume = request.volume
            kind = _VOLUME_KINDS.get(volume.kind)
            if kind is None:
                raise InvalidArgument(
                    "volume.kind: must be STORAGE_KIND_CSV or STORAGE_KIND_LUN, "
                    f"got {_kind_name(volume.kind)}"
                )
            if volume.capacity_bytes < GIB or volume.capacity_bytes % GIB:
                raise InvalidArgument(
                    "volume.capacity_bytes: must be a whole number of GiB, at least 1 GiB, "
                    f"got {volume.capacity_bytes}"
                )
            self._administration.add_volume(VolumeSpec(volume.name, kind, volume.capacity_bytes // GIB))
            return agent_pb2.HostAdminServiceAddVolumeResponse(host=self._host_info())

        return await self._admin_call(context, work)

    async def RemoveVolume(
        self, request: agent_pb2.HostAdminServiceRemoveVolumeRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.HostAdminServiceRemoveVolumeResponse:
        def work() -> agent_pb2.HostAdminServiceRemoveVolumeResponse:
            kind = None
            if request.kind != common_pb2.STORAGE_KIND_UNSPECIFIED:
                kind = _VOLUME_KINDS.get(request.kind)
                if kind is None:
                    raise InvalidArgument(
                        "kind: must be STORAGE_KIND_CSV, STORAGE_KIND_LUN or unset, "
                        f"got {_kind_name(request.kind)}"
                    )
            self._administration.remove_volume(request.name, kind)
            return agent_pb2.HostAdminServiceRemoveVolumeResponse(host=self._host_info())

        return await self._admin_call(context, work)

    async def AddClusterResource(
        self, request: agent_pb2.HostAdminServiceAddClusterResourceRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.HostAdminServiceAddClusterResourceResponse:
        async def work() -> common_pb2.VmRuntime:
            if not request.HasField("resource"):
                raise InvalidArgument("resource: is required")
            resource = resource_from_pb(request.resource)
            return self._vm_to_pb(await self._administration.add_cluster_resource(request.vm_id, resource))

        vm = await self._admin_vm_call(context, work)
        return agent_pb2.HostAdminServiceAddClusterResourceResponse(vm=vm)

    async def RemoveClusterResource(
        self,
        request: agent_pb2.HostAdminServiceRemoveClusterResourceRequest,
        context: grpc.aio.ServicerContext,
    ) -> agent_pb2.HostAdminServiceRemoveClusterResourceResponse:
        async def work() -> common_pb2.VmRuntime:
            view = await self._administration.remove_cluster_resource(request.vm_id, request.name)
            return self._vm_to_pb(view)

        vm = await self._admin_vm_call(context, work)
        return agent_pb2.HostAdminServiceRemoveClusterResourceResponse(vm=vm)


def _kind_name(value: int) -> str:
    try:
        return common_pb2.StorageKind.Name(value)
    except ValueError:
        return str(value)

"""An in-memory AgentService for the manager's tests: VMs in a dict, memory accounted.

It serves real gRPC on 127.0.0.1 so the manager process talks to it exactly as it
would to a node agent, but it holds no files and runs no guest. Tests can add a VM
behind the manager's back, slow calls down, or stop the server to play a dead host.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import grpc

from havm.v1 import agent_pb2, agent_pb2_grpc, common_pb2

GIB = 1024**3
S = common_pb2
OP = agent_pb2

# Operation -> (states it is allowed from, state it leads to).
TRANSITIONS = {
    OP.VM_OPERATION_START: ({S.VM_STATE_STOPPED, S.VM_STATE_SAVED}, S.VM_STATE_RUNNING),
    OP.VM_OPERATION_SHUTDOWN: ({S.VM_STATE_RUNNING}, S.VM_STATE_STOPPED),
    OP.VM_OPERATION_TURN_OFF: ({S.VM_STATE_RUNNING, S.VM_STATE_PAUSED}, S.VM_STATE_STOPPED),
    OP.VM_OPERATION_SAVE: ({S.VM_STATE_RUNNING, S.VM_STATE_PAUSED}, S.VM_STATE_SAVED),
    OP.VM_OPERATION_RESTORE: ({S.VM_STATE_SAVED}, S.VM_STATE_RUNNING),
    OP.VM_OPERATION_PAUSE: ({S.VM_STATE_RUNNING}, S.VM_STATE_PAUSED),
    OP.VM_OPERATION_RESUME: ({S.VM_STATE_PAUSED}, S.VM_STATE_RUNNING),
}
HOLDS_MEMORY = {S.VM_STATE_RUNNING, S.VM_STATE_PAUSED, S.VM_STATE_STARTING, S.VM_STATE_SAVING}


@dataclass
class FakeHost:
    name: str
    cluster: str = ""
    memory_mb: int = 32768
    reserve_mb: int = 2048
    disks: tuple[tuple[str, int], ...] = (("C", 500),)
    networks: tuple[str, ...] = ("External",)
    volumes: tuple[tuple[str, int, int], ...] = ()  # (name, StorageKind, capacity_gb)
    vms: dict[str, common_pb2.VmRuntime] = field(default_factory=dict)
    # Seconds every mutating call waits before answering (to catch a job mid-flight).
    delay: float = 0.0
    boot_id: str = "boot-1"
    # The lease records on shared storage: {vm id: generation}. Nodes of one cluster
    # share one dict, as they share the SAN.
    leases: dict[str, int] = field(default_factory=dict)
    # Take-overs this host refuses, to play a node on which restarts fail.
    refuse_take_over: bool = False

    def memory_free_mb(self) -> int:
        used = sum(vm.spec.memory_mb for vm in self.vms.values() if vm.state in HOLDS_MEMORY)
        return self.memory_mb - self.reserve_mb - used

    def add_vm(self, vm_id: str, name: str, state: int = S.VM_STATE_RUNNING, memory_mb: int = 512) -> None:
        """A VM created directly on the host, behind the manager's back."""
        self.vms[vm_id] = common_pb2.VmRuntime(
            spec=common_pb2.VmSpec(
                id=vm_id,
                name=name,
                memory_mb=memory_mb,
                cpus=1,
                disk_gb=10,
                storage=common_pb2.StorageLocation(kind=S.STORAGE_KIND_LOCAL_DISK, name="C"),
            ),
            state=state,
        )


class FakeAgentServicer(agent_pb2_grpc.AgentServiceServicer):
    def __init__(self, host: FakeHost) -> None:
        self.host = host

    async def _vm(self, vm_id: str, context: grpc.aio.ServicerContext) -> common_pb2.VmRuntime:
        vm = self.host.vms.get(vm_id)
        if vm is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"VM {vm_id} does not exist on host {self.host.name}"
            )
        return vm  # type: ignore[return-value]

    async def GetInventory(self, request, context):  # noqa: N802
        h = self.host
        info = common_pb2.HostInfo(
            name=h.name,
            cluster=h.cluster,
            profile=common_pb2.PROFILE_HYPERV_2008R2,
            cpu=common_pb2.Cpu(
                vendor="GenuineIntel", model="Intel Xeon X5570", features=["sse4_2"], cores=8, mhz=2933
            ),
            memory_mb=h.memory_mb,
            memory_free_mb=h.memory_free_mb(),
            disks=[
                common_pb2.LocalDisk(name=n, capacity_bytes=c * GIB, free_bytes=c * GIB) for n, c in h.disks
            ],
            networks=[
                common_pb2.Network(name=n, kind=common_pb2.NETWORK_KIND_VIRTUAL_NETWORK, bound_to="nic")
                for n in h.networks
            ],
            volumes=[
                common_pb2.SharedVolume(name=n, kind=k, capacity_bytes=c * GIB, free_bytes=c * GIB)
                for n, k, c in h.volumes
            ],
            boot_id=h.boot_id,
        )
        self._forget_fenced()
        return agent_pb2.AgentServiceGetInventoryResponse(host=info, vms=list(h.vms.values()))

    def _forget_fenced(self) -> None:
        """A copy whose lease another host took over is fenced: the host drops it, as a real agent does."""
        for vm_id, vm in list(self.host.vms.items()):
            if vm.lease_generation < self.host.leases.get(vm_id, 0):
                del self.host.vms[vm_id]

    async def CreateVm(self, request, context):  # noqa: N802
        await asyncio.sleep(self.host.delay)
        spec = request.spec
        if spec.id in self.host.vms:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, f"VM {spec.id} already exists")
        leases = self.host.leases
        if request.take_over:
            if self.host.refuse_take_over:
                await context.abort(grpc.StatusCode.INTERNAL, f"host {self.host.name} cannot take VMs over")
            if request.lease_generation <= leases.get(spec.id, 0):
                await context.abort(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"lease generation {request.lease_generation} of VM {spec.name} is not newer "
                    f"than {leases.get(spec.id, 0)} on storage",
                )
            generation = request.lease_generation
        else:
            generation = leases.get(spec.id, 0) + 1
        leases[spec.id] = generation
        vm = common_pb2.VmRuntime(spec=spec, state=S.VM_STATE_STOPPED, lease_generation=generation)
        self.host.vms[spec.id] = vm
        return agent_pb2.AgentServiceCreateVmResponse(vm=vm)

    async def GetVm(self, request, context):  # noqa: N802
        return agent_pb2.AgentServiceGetVmResponse(vm=await self._vm(request.vm_id, context))

    async def OperateVm(self, request, context):  # noqa: N802
        await asyncio.sleep(self.host.delay)
        vm = await self._vm(request.vm_id, context)
        allowed, result = TRANSITIONS[request.operation]
        if vm.state not in allowed:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"VM {vm.spec.name} is {S.VmState.Name(vm.state)}",
            )
        if result in HOLDS_MEMORY and vm.state not in HOLDS_MEMORY:
            free = self.host.memory_free_mb()
            if vm.spec.memory_mb > free:
                await context.abort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"host {self.host.name} has {free} MB free, "
                    f"VM {vm.spec.name} needs {vm.spec.memory_mb} MB",
                )
        vm.state = result
        return agent_pb2.AgentServiceOperateVmResponse(vm=vm)

    async def DeleteVm(self, request, context):  # noqa: N802
        vm = await self._vm(request.vm_id, context)
        if vm.state not in (S.VM_STATE_STOPPED, S.VM_STATE_SAVED):
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"VM {vm.spec.name} is not stopped")
        del self.host.vms[request.vm_id]
        return agent_pb2.AgentServiceDeleteVmResponse()


class FakeAgent:
    """One fake host's gRPC server on a free loopback port."""

    def __init__(self, host: FakeHost) -> None:
        self.host = host
        self.port = 0
        self._server: grpc.aio.Server | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        server = grpc.aio.server()
        agent_pb2_grpc.add_AgentServiceServicer_to_server(FakeAgentServicer(self.host), server)
        # The same port again after a stop, so the manager's address stays right.
        self.port = server.add_insecure_port(f"127.0.0.1:{self.port}")
        await server.start()
        self._server = server

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(0)
            self._server = None

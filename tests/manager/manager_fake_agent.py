"""An in-memory AgentService for the manager's tests: VMs in a dict, memory accounted.

It serves real gRPC on 127.0.0.1 so the manager process talks to it exactly as it
would to a node agent, but it holds no files and runs no guest. Tests can add a VM
behind the manager's back, slow calls down, or stop the server to play a dead host.

Live migration follows the proto's semantics without a second stream: the source
finds the destination's FakeHost by the address it was given (hosts share a
`network` registry, as agents share a migration network), reports a few pre-copy
passes, then moves the VM there with the new lease. The migration runs in a task of
its own, so it goes on to its end when the caller goes away, as a real agent's does.
"""

from __future__ import annotations

import asyncio
import zlib
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
    profile: int = common_pb2.PROFILE_HYPERV_2008R2
    cpu_vendor: str = "GenuineIntel"
    cpu_features: tuple[str, ...] = ("sse4_2",)
    # Every FakeHost by the addresses it is reached at for migrations (shared).
    network: dict[str, FakeHost] = field(default_factory=dict)
    # Extra reasons CheckCompatibility gives, to play an incompatible destination.
    incompatible: tuple[str, ...] = ()
    # Live migration as a source: pre-copy passes reported, seconds between messages,
    # an error to end with after the first pass, or a stream that goes silent.
    migration_passes: int = 3
    migration_step_delay: float = 0.0
    migration_error: str = ""
    # The kind of failure that error is, as the trailing metadata names it (agent.proto).
    migration_failure: str = ""
    migration_hang: bool = False
    # The source goes on with the migration but tells the caller nothing after preparing.
    migration_quiet: bool = False
    # An error to end the stream with once the VM moved (the connection to the caller lost).
    migration_error_after_move: str = ""
    # GetVm answers UNAVAILABLE, to play a host that does not answer about its VMs.
    silent: bool = False
    # Seconds a save takes, the VM `saving` meanwhile; it ends even if the caller goes away.
    save_delay: float = 0.0
    # Live migrations this host takes part in now, and the most at once.
    active_migrations: int = 0
    peak_migrations: int = 0
    # (vm id, destination address) of every MigrateVm this host received.
    migrate_calls: list[tuple[str, str]] = field(default_factory=list)
    # Every message of each live migration this host sent out, by migration id (None
    # ends a stream; a string is the error it ended with), for a caller that re-attaches.
    migration_log: dict[str, list[object]] = field(default_factory=dict)
    migration_logged: asyncio.Event = field(default_factory=asyncio.Event)
    reattach_calls: int = 0
    # Answer every re-attach NOT_FOUND, as an agent that restarted since.
    forgets_migrations: bool = False

    def failure_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("havm-migration-failure", self.migration_failure),) if self.migration_failure else ()

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
            profile=h.profile,
            cpu=common_pb2.Cpu(
                vendor=h.cpu_vendor, model="Intel Xeon X5570", features=h.cpu_features, cores=8, mhz=2933
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
        state = S.VM_STATE_STOPPED
        if request.take_over and any(
            spec.id in h.vms and h.vms[spec.id].state == S.VM_STATE_SAVED for h in self.host.network.values()
        ):
            state = S.VM_STATE_SAVED  # the saved state is on shared storage: it comes along
        vm = common_pb2.VmRuntime(spec=spec, state=state, lease_generation=generation)
        self.host.vms[spec.id] = vm
        return agent_pb2.AgentServiceCreateVmResponse(vm=vm)

    async def GetVm(self, request, context):  # noqa: N802
        if self.host.silent:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"host {self.host.name} does not answer")
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
        if vm.state == S.VM_STATE_STOPPED and result == S.VM_STATE_RUNNING:
            vm.cpu_vendor = self.host.cpu_vendor
            vm.cpu_features[:] = self.host.cpu_features
        if request.operation == OP.VM_OPERATION_SAVE and self.host.save_delay > 0:
            vm.state = S.VM_STATE_SAVING

            async def save() -> None:
                await asyncio.sleep(self.host.save_delay)
                vm.state = result

            task = asyncio.get_running_loop().create_task(save())
            FakeAgent.tasks.add(task)
            task.add_done_callback(FakeAgent.tasks.discard)
            await asyncio.shield(task)
        vm.state = result
        return agent_pb2.AgentServiceOperateVmResponse(vm=vm)

    async def DeleteVm(self, request, context):  # noqa: N802
        vm = await self._vm(request.vm_id, context)
        if vm.state not in (S.VM_STATE_STOPPED, S.VM_STATE_SAVED):
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"VM {vm.spec.name} is not stopped")
        del self.host.vms[request.vm_id]
        return agent_pb2.AgentServiceDeleteVmResponse()

    async def UpdateVm(self, request, context):  # noqa: N802
        vm = await self._vm(request.vm_id, context)
        if vm.state != S.VM_STATE_STOPPED:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"VM {vm.spec.name} is not stopped")
        if request.HasField("processor_compatibility"):
            vm.spec.processor_compatibility = request.processor_compatibility
        return agent_pb2.AgentServiceUpdateVmResponse(vm=vm)

    async def CheckCompatibility(self, request, context):  # noqa: N802
        h, spec = self.host, request.spec
        reasons = list(h.incompatible)
        if request.cpu_vendor and request.cpu_vendor != h.cpu_vendor:
            reasons.append(
                f"host {h.name} has a {h.cpu_vendor} processor, the VM runs on {request.cpu_vendor}"
            )
        missing = [f for f in request.cpu_features if f not in h.cpu_features]
        if missing:
            reasons.append(f"host {h.name} lacks CPU features {', '.join(missing)}")
        if spec.memory_mb > h.memory_free_mb():
            reasons.append(
                f"host {h.name} has {h.memory_free_mb()} MB free, the VM needs {spec.memory_mb} MB"
            )
        for network in spec.networks:
            if network not in h.networks:
                reasons.append(f"host {h.name} has no virtual network '{network}'")
        storage = spec.storage
        visible = [n for n, _, _ in h.volumes] + [n for n, _ in h.disks]
        if storage.name and storage.name not in visible:
            reasons.append(f"host {h.name} cannot see {storage.name}")
        return agent_pb2.AgentServiceCheckCompatibilityResponse(compatible=not reasons, reasons=reasons)

    async def MigrateVm(self, request, context):  # noqa: N802
        h = self.host
        h.migrate_calls.append((request.vm_id, request.destination_address))
        if request.reattach:
            h.reattach_calls += 1
            if request.migration_id not in h.migration_log or h.forgets_migrations:
                await context.abort(grpc.StatusCode.NOT_FOUND, f"no migration {request.migration_id} here")
            # The latest message, then the rest, as the agent does.
            log = h.migration_log[request.migration_id]
            index = max(0, len(log) - 1)
            if index > 0 and log[index] is None:
                index -= 1  # ended: its last message is how it ended
            while True:
                logged = h.migration_logged
                while index < len(log):
                    item, index = log[index], index + 1
                    if item is None:
                        return
                    if isinstance(item, str):
                        await context.abort(
                            grpc.StatusCode.ABORTED, item, trailing_metadata=h.failure_metadata()
                        )
                    yield item
                await logged.wait()
        vm = await self._vm(request.vm_id, context)
        if vm.state != S.VM_STATE_RUNNING:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"VM {vm.spec.name} is not running")
        destination = h.network.get(request.destination_address)
        if destination is None:
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                f"no agent answers at {request.destination_address}",
                trailing_metadata=(("havm-migration-failure", "MIGRATION_FAILURE_PEER_GONE"),),
            )
        queue: asyncio.Queue[agent_pb2.AgentServiceMigrateVmResponse | str | None] = asyncio.Queue()
        task = asyncio.get_running_loop().create_task(
            self._migrate(vm, destination, request, _Logged(queue, h, request.migration_id))
        )
        FakeAgent.tasks.add(task)
        task.add_done_callback(FakeAgent.tasks.discard)
        while True:
            item = await queue.get()
            if item is None:
                return
            if isinstance(item, str):
                await context.abort(grpc.StatusCode.ABORTED, item, trailing_metadata=h.failure_metadata())
            yield item

    async def _migrate(self, vm, destination: FakeHost, request, queue: _Logged) -> None:
        h = self.host
        memory = vm.spec.memory_mb * 1024 * 1024
        for host in (h, destination):
            host.active_migrations += 1
            host.peak_migrations = max(host.peak_migrations, host.active_migrations)
        vm.migration_id = request.migration_id
        try:
            queue.put_nowait(agent_pb2.AgentServiceMigrateVmResponse(phase=OP.MIGRATION_PHASE_PREPARING))
            if h.migration_quiet:
                queue.original = asyncio.Queue()  # what follows reaches nobody (but the log)
            sent = 0
            for n in range(1, h.migration_passes + 1):
                await asyncio.sleep(h.migration_step_delay)
                if h.migration_hang:
                    await asyncio.sleep(3600)
                sent += memory // n
                progress = agent_pb2.AgentServiceMigrateVmResponse(
                    phase=OP.MIGRATION_PHASE_PRE_COPY,
                    bytes_sent=sent,
                    bytes_remaining=memory // (n + 1),
                    mb_per_s=400.0,
                )
                setattr(progress, "pass", n)
                queue.put_nowait(progress)
                if h.migration_error:
                    queue.put_nowait(h.migration_error)
                    return
            queue.put_nowait(agent_pb2.AgentServiceMigrateVmResponse(phase=OP.MIGRATION_PHASE_BLACKOUT))
            moved = common_pb2.VmRuntime()
            moved.CopyFrom(vm)
            moved.lease_generation = request.lease_generation
            moved.migration_id = ""
            if request.HasField("storage"):
                moved.spec.storage.CopyFrom(request.storage)
            destination.vms[vm.spec.id] = moved
            destination.leases[vm.spec.id] = request.lease_generation
            h.vms.pop(vm.spec.id, None)
            if h.migration_error_after_move:
                queue.put_nowait(h.migration_error_after_move)
                return
            digest = f"{zlib.crc32(vm.spec.id.encode()):08x}"
            done = agent_pb2.AgentServiceMigrateVmResponse(
                phase=OP.MIGRATION_PHASE_COMPLETED,
                bytes_sent=sent,
                duration_ms=42,
                blackout_ms=7,
                memory_digest=digest,
                resumed_digest=digest,
                vm=moved,
            )
            setattr(done, "pass", h.migration_passes)
            queue.put_nowait(done)
            queue.put_nowait(None)
        finally:
            vm.migration_id = ""
            for host in (h, destination):
                host.active_migrations -= 1

    async def MoveVmStorage(self, request, context):  # noqa: N802
        vm = await self._vm(request.vm_id, context)
        await asyncio.sleep(self.host.delay)
        vm.spec.storage.CopyFrom(request.storage)
        running = vm.state == S.VM_STATE_RUNNING
        return agent_pb2.AgentServiceMoveVmStorageResponse(
            vm=vm, bytes_copied=vm.spec.disk_gb * GIB, duration_ms=12, blackout_ms=3 if running else 0
        )


class _Logged:
    """A migration's message queue to its first caller that also keeps every message in
    the host's migration log, for callers that re-attach."""

    def __init__(self, original: asyncio.Queue, host: FakeHost, migration_id: str) -> None:  # type: ignore[type-arg]
        self.original = original
        self._host = host
        self._log = host.migration_log.setdefault(migration_id, [])

    def put_nowait(self, item: object) -> None:
        self.original.put_nowait(item)
        self._log.append(item)
        woken, self._host.migration_logged = self._host.migration_logged, asyncio.Event()
        woken.set()


class FakeAgent:
    """One fake host's gRPC server on a free loopback port."""

    # Migrations under way in any fake agent, cancelled when the agents stop.
    tasks: set[asyncio.Task[None]] = set()

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
        tasks = list(FakeAgent.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.stop(0)
            self._server = None

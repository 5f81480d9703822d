"""The manager as a real process over the real agent app of every host, each behind a
real gRPC server on loopback in the test's process (havm.scenario.sim_agent.LoopbackAgent).

What happens on a host behind the manager's back goes through the agent's own API;
a host that stops answering is its agent stopped, or a server on its port that never
answers; a slow host is a wait injected at its VmHost.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from manager_testkit import REPO_ROOT, ManagerProcess, eventually

from havm.scenario.sim_agent import LoopbackAgent, intercept
from havm.v1 import agent_pb2, common_pb2, manager_pb2, manager_pb2_grpc
from havm.v1 import manager_pb2 as m
from manager.adapters.agent_client import AgentClient
from manager.core.model import StorageKind, StorageLocation, VmOperation, VmRecord
from manager.core.settings import Settings
from manager.core.states import VmState
from node_agent.core.power import Operation, PowerState

pytestmark = pytest.mark.integration
Stub = manager_pb2_grpc.ManagerServiceStub
Agents = dict[str, LoopbackAgent]
LOCAL_C = StorageLocation(StorageKind.LOCAL_DISK, "C")


def on_agent(agents: Agents, host: str, vm_id: str) -> Any:
    """What `host`'s agent holds of the VM (None if nothing)."""
    vm_host = agents[host].vm_host
    assert vm_host is not None, f"the agent of {host} is not running"
    return next((v for v in vm_host.list_vms() if v.spec.id == vm_id), None)


async def behind_the_managers_back(agent: LoopbackAgent, vm: VmRecord, start: bool) -> None:
    """A VM created (and started) on the host through the agent's own API."""
    client = AgentClient(Settings())
    try:
        await client.create_vm(agent.name, agent.address, vm)
        if start:
            await client.operate_vm(agent.name, agent.address, vm.id, VmOperation.START)
    finally:
        await client.close()


def local_vm(vm_id: str, name: str, memory_mb: int = 512, cpus: int = 1, disk_gb: int = 10) -> VmRecord:
    """A VM that is not highly available, on the host's local disk C."""
    return VmRecord(vm_id, name, None, VmState.STOPPED, False, memory_mb, cpus, disk_gb, LOCAL_C)


@contextlib.asynccontextmanager
async def starts_held(agent: LoopbackAgent) -> AsyncIterator[None]:
    """Every START the agent is asked for waits until the block ends (a slow host)."""
    assert agent.vm_host is not None
    gate = asyncio.Event()

    def wrap(operate: Callable[..., Any]) -> Callable[..., Any]:
        async def held(vm_id: str, operation: Operation) -> Any:
            if operation is Operation.START:
                await gate.wait()
            return await operate(vm_id, operation)

        return held

    undo = intercept(agent.vm_host, "operate", wrap)
    try:
        yield
    finally:
        gate.set()
        undo()


class Unanswering(grpc.GenericRpcHandler):
    """A gRPC server on an agent's port that takes every call and never answers: once
    the agent stops, every call to the host hangs until its deadline, as on an agent
    that hangs. It listens beside the agent (gRPC servers reuse the port), so that no
    connection attempt finds the port closed in between."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.calls = 0
        self._server = grpc.aio.server()
        self._server.add_generic_rpc_handlers((self,))
        self._server.add_insecure_port(f"127.0.0.1:{port}")

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        async def hang(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            self.calls += 1
            await asyncio.Event().wait()
            return b""

        return grpc.unary_unary_rpc_method_handler(hang)

    async def __aenter__(self) -> Unanswering:
        await self._server.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._server.stop(0)


async def hosts_by_name(stub: Stub) -> dict[str, m.Host]:
    reply = await stub.ListHosts(m.ListHostsRequest())
    return {h.name: h for h in reply.hosts}


async def all_hosts_ok(stub: Stub) -> None:
    async def check() -> bool:
        return all(h.state == m.HOST_STATE_OK for h in (await hosts_by_name(stub)).values())

    await eventually(check, what="every host ok")


async def finish(stub: Stub, job: m.Job) -> list[m.Job]:
    """Every state WatchJob streams, until the job ends."""
    seen = []
    async for reply in stub.WatchJob(m.WatchJobRequest(id=job.id), timeout=10):
        seen.append(reply.job)
    return seen


async def create(stub: Stub, **fields: object) -> tuple[m.Job, m.Vm]:
    reply = await stub.CreateVm(m.CreateVmRequest(**fields))
    jobs = await finish(stub, reply.job)
    return jobs[-1], reply.vm


async def test_hosts_are_ok_after_the_first_refresh(stub: Stub) -> None:
    await all_hosts_ok(stub)
    hosts = await hosts_by_name(stub)
    assert set(hosts) == {"node1", "node2", "node3", "standalone1"}
    node1 = hosts["node1"]
    assert node1.cluster == "cluster1" and node1.cpu.cores == 8
    assert node1.memory_free_mb == 32768 - 2048
    assert {v.name for v in node1.volumes} == {"Volume1", "lun1"}
    assert node1.last_refresh.seconds > 0
    assert 0 < node1.rating <= 5 and node1.rating * 2 == int(node1.rating * 2)
    assert hosts["standalone1"].cluster == ""
    status = await stub.GetStatus(m.GetStatusRequest())
    assert (status.hosts_total, status.hosts_ok) == (4, 4)
    assert [c.name for c in status.clusters] == ["cluster1"]
    cluster = (await stub.GetCluster(m.GetClusterRequest(name="cluster1"))).cluster
    assert list(cluster.nodes) == ["node1", "node2", "node3"] and cluster.reserve == 1
    assert cluster.state == m.CLUSTER_STATE_OK


async def test_health_and_reflection(manager: ManagerProcess) -> None:
    async with grpc.aio.insecure_channel(manager.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "havm.v1.ManagerService"):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        async for reply in reflection.ServerReflectionInfo(iter([request])):
            names = {s.name for s in reply.list_services_response.service}
            assert {"havm.v1.ManagerService", "grpc.health.v1.Health"} <= names


async def test_ha_vm_goes_to_a_cluster_node_on_a_csv(stub: Stub, loopback_agents: Agents) -> None:
    await all_hosts_ok(stub)
    reply = await stub.CreateVm(m.CreateVmRequest(name="web1", memory_mb=2048, cpus=2, highly_available=True))
    assert reply.vm.host in ("node1", "node2", "node3")
    assert reply.vm.storage.kind == common_pb2.STORAGE_KIND_CSV and reply.vm.storage.name == "Volume1"
    assert reply.job.kind == "create_vm" and reply.job.state == m.JOB_STATE_RUNNING
    jobs = await finish(stub, reply.job)
    assert jobs[-1].state == m.JOB_STATE_COMPLETED, jobs[-1].error
    assert jobs[-1].progress == 100
    assert [j.progress for j in jobs] == sorted(j.progress for j in jobs)
    vm = (await stub.GetVm(m.GetVmRequest(name="web1"))).vm
    assert vm.state == common_pb2.VM_STATE_RUNNING
    assert vm.status == common_pb2.VM_CONFIG_STATUS_OK and not vm.imported
    there = on_agent(loopback_agents, vm.host, vm.id)
    assert there.state is PowerState.RUNNING and there.spec.highly_available
    assert (there.spec.storage.kind.value, there.spec.storage.name) == ("csv", "Volume1")


async def test_non_ha_vm_goes_to_the_standalone_host(stub: Stub, loopback_agents: Agents) -> None:
    await all_hosts_ok(stub)
    job, vm = await create(stub, name="db1", memory_mb=4096, no_start=True)
    assert vm.host == "standalone1"
    assert vm.storage.kind == common_pb2.STORAGE_KIND_LOCAL_DISK and vm.storage.name == "C"
    assert job.state == m.JOB_STATE_COMPLETED, job.error
    assert on_agent(loopback_agents, "standalone1", vm.id).state is PowerState.STOPPED
    assert (await stub.GetVm(m.GetVmRequest(name="db1"))).vm.state == common_pb2.VM_STATE_STOPPED


async def test_bad_requests_are_refused_with_a_sentence(stub: Stub) -> None:
    await all_hosts_ok(stub)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.CreateVm(m.CreateVmRequest(name="x1", memory_mb=1024, host="node1"))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "--ha" in info.value.details() and "node1" in info.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.CreateVm(m.CreateVmRequest(name="x1", memory_mb=0))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith("memory_mb: must be positive")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.CreateVm(m.CreateVmRequest(name="x1", memory_mb=10**6, highly_available=True))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "node1 has 30720 MB free" in info.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.GetVm(m.GetVmRequest(name="nope"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.RefreshCluster(m.RefreshClusterRequest(target="nope"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.OperateVm(m.OperateVmRequest(name="nope", operation=agent_pb2.VM_OPERATION_START))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_operations_delete_and_job_list(stub: Stub, loopback_agents: Agents) -> None:
    await all_hosts_ok(stub)
    job, vm = await create(stub, name="app1", memory_mb=1024)
    assert job.state == m.JOB_STATE_COMPLETED, job.error
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.DeleteVm(m.DeleteVmRequest(name="app1"))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert info.value.details() == "VM app1 is running: stop it first"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.CreateVm(m.CreateVmRequest(name="app1", memory_mb=1024))
    assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS
    for operation, state, power in (
        (agent_pb2.VM_OPERATION_PAUSE, common_pb2.VM_STATE_PAUSED, PowerState.PAUSED),
        (agent_pb2.VM_OPERATION_RESUME, common_pb2.VM_STATE_RUNNING, PowerState.RUNNING),
        (agent_pb2.VM_OPERATION_SAVE, common_pb2.VM_STATE_SAVED, PowerState.SAVED),
    ):
        reply = await stub.OperateVm(m.OperateVmRequest(name="app1", operation=operation))
        jobs = await finish(stub, reply.job)
        assert jobs[-1].state == m.JOB_STATE_COMPLETED, jobs[-1].error
        assert (await stub.GetVm(m.GetVmRequest(name="app1"))).vm.state == state
        assert on_agent(loopback_agents, vm.host, vm.id).state is power
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.OperateVm(m.OperateVmRequest(name="app1", operation=agent_pb2.VM_OPERATION_PAUSE))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    reply = await stub.DeleteVm(m.DeleteVmRequest(name="app1"))
    assert (await finish(stub, reply.job))[-1].state == m.JOB_STATE_COMPLETED
    assert on_agent(loopback_agents, vm.host, vm.id) is None
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.GetVm(m.GetVmRequest(name="app1"))
    jobs = (await stub.ListJobs(m.ListJobsRequest())).jobs
    assert [j.kind for j in jobs] == ["delete_vm", "save_vm", "resume_vm", "pause_vm", "create_vm"]
    assert len((await stub.ListJobs(m.ListJobsRequest(limit=2))).jobs) == 2
    assert (await stub.GetJob(m.GetJobRequest(id=jobs[0].id))).job.target == "app1"


# No periodic refresh between the hog and the create: placement must not see the hog.
@pytest.mark.parametrize("manager", [600.0], indirect=True)
async def test_an_agent_refusal_fails_the_job_with_its_sentence(stub: Stub, loopback_agents: Agents) -> None:
    await all_hosts_ok(stub)
    # Memory taken behind the manager's back: placement still sees room, the agent does not.
    hog = local_vm("ffffffff-0000", "hog", memory_mb=14000)
    await behind_the_managers_back(loopback_agents["standalone1"], hog, start=True)
    job, vm = await create(stub, name="late1", memory_mb=2048, host="standalone1")
    assert job.state == m.JOB_STATE_FAILED
    assert "not enough memory on standalone1 to start late1: needs 2048 MB, 336 MB available" in job.error
    recorded = (await stub.GetVm(m.GetVmRequest(name="late1"))).vm
    assert recorded.state == common_pb2.VM_STATE_STOPPED
    assert on_agent(loopback_agents, "standalone1", vm.id).state is PowerState.STOPPED


async def test_a_vm_added_on_an_agent_is_imported(stub: Stub, loopback_agents: Agents) -> None:
    await all_hosts_ok(stub)
    await create(stub, name="web9", memory_mb=512, no_start=True)
    await behind_the_managers_back(
        loopback_agents["standalone1"], local_vm("abcdef12-3456-7890", "web9"), True
    )
    await behind_the_managers_back(loopback_agents["node2"], local_vm("0123abcd-0000-1111", "ghost"), True)
    reply = await stub.RefreshCluster(m.RefreshClusterRequest())
    jobs = await finish(stub, reply.job)
    assert jobs[-1].state == m.JOB_STATE_COMPLETED, jobs[-1].error
    vms = {v.name: v for v in (await stub.ListVms(m.ListVmsRequest())).vms}
    assert vms["web9-abcdef12"].imported and vms["web9-abcdef12"].host == "standalone1"
    assert vms["web9-abcdef12"].state == common_pb2.VM_STATE_RUNNING
    ghost = vms["ghost"]
    assert ghost.imported and ghost.host == "node2"
    # Marked HA? No: but a VM on a cluster node is recorded as reported.
    assert not vms["web9"].imported
    on_node2 = (await stub.ListVms(m.ListVmsRequest(host="node2"))).vms
    assert [v.name for v in on_node2] == ["ghost"]


async def test_a_silent_agent_makes_its_host_not_responding(stub: Stub, loopback_agents: Agents) -> None:
    await all_hosts_ok(stub)
    _, vm = await create(stub, name="solo1", memory_mb=512)
    await loopback_agents["standalone1"].stop()

    async def host_down() -> bool:
        host = (await stub.GetHost(m.GetHostRequest(name="standalone1"))).host
        return host.state == m.HOST_STATE_NOT_RESPONDING

    await eventually(host_down, timeout=10, what="standalone1 not responding")
    host = (await stub.GetHost(m.GetHostRequest(name="standalone1"))).host
    assert host.state_reason and host.rating == 0
    assert (await stub.GetVm(m.GetVmRequest(name="solo1"))).vm.state == common_pb2.VM_STATE_UNKNOWN
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.OperateVm(m.OperateVmRequest(name="solo1", operation=agent_pb2.VM_OPERATION_SHUTDOWN))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    # The agent comes back on its files and starts again what was running.
    await loopback_agents["standalone1"].start()

    async def back() -> bool:
        return (await stub.GetVm(m.GetVmRequest(name="solo1"))).vm.state == common_pb2.VM_STATE_RUNNING

    await eventually(back, timeout=10, what="solo1 running again")
    assert on_agent(loopback_agents, "standalone1", vm.id).state is PowerState.RUNNING


async def test_kill_9_and_restart_keeps_vms_and_jobs(
    manager: ManagerProcess,
    loopback_agents: Agents,
    manager_processes: list[ManagerProcess],
) -> None:
    async with grpc.aio.insecure_channel(manager.address) as channel:
        stub = Stub(channel)
        await all_hosts_ok(stub)
        job, vm = await create(stub, name="keep1", memory_mb=1024, highly_available=True)
        assert job.state == m.JOB_STATE_COMPLETED, job.error
        # A job caught mid-flight: the host does not finish starting the VM.
        async with starts_held(loopback_agents["standalone1"]):
            slow = (await stub.CreateVm(m.CreateVmRequest(name="slow1", memory_mb=512))).job
            await asyncio.sleep(0.3)
            manager.kill9()
    again = ManagerProcess(manager.topology, manager.state_dir)
    manager_processes.append(again)
    await again.start()
    async with grpc.aio.insecure_channel(again.address) as channel:
        stub = Stub(channel)
        jobs = {j.id: j for j in (await stub.ListJobs(m.ListJobsRequest())).jobs}
        assert jobs[job.id].state == m.JOB_STATE_COMPLETED
        # The interrupted create ends as what its host has: the VM exists there.
        async for update in stub.WatchJob(m.WatchJobRequest(id=slow.id), timeout=20):
            ended = update.job
        assert ended.state == m.JOB_STATE_COMPLETED, ended.error
        assert ended.message.startswith("VM slow1 exists on host standalone1 ("), ended.message
        await all_hosts_ok(stub)
        kept = (await stub.GetVm(m.GetVmRequest(name="keep1"))).vm
        assert kept.id == vm.id and kept.host == vm.host
        assert kept.state == common_pb2.VM_STATE_RUNNING
        assert on_agent(loopback_agents, kept.host, kept.id).state is PowerState.RUNNING


async def test_sigterm_stops_the_manager_cleanly(manager: ManagerProcess) -> None:
    assert await manager.terminate() == 0
    assert "Traceback" not in manager.log()
    assert " INFO manager.main stopped" in manager.log()


def test_a_bad_topology_exits_2_naming_the_field(tmp_path: Path) -> None:
    topology = tmp_path / "t.yaml"
    topology.write_text("version: 1\nhosts:\n  - name: a\n    memroy_mb: 1\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "manager",
            "--insecure",
            "--topology",
            str(topology),
            "--state-dir",
            str(tmp_path / "s"),
            "--listen",
            "127.0.0.1:0",
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=20,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "hosts[0].memroy_mb: unknown field" in lines[0]


def test_an_address_in_use_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    topology = tmp_path / "t.yaml"
    topology.write_text(
        "version: 1\nhosts:\n  - name: a\n    profile: esx\n    memory_mb: 4096\n"
        "    cpu: {vendor: GenuineIntel, model: X, features: [], cores: 2, mhz: 2000}\n"
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "manager",
                "--insecure",
                "--topology",
                str(topology),
                "--state-dir",
                str(tmp_path / "s"),
                "--listen",
                f"127.0.0.1:{port}",
            ],
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            timeout=20,
        )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


async def test_a_bad_storage_kind_is_refused_not_dropped(stub: Stub) -> None:
    await all_hosts_ok(stub)
    for kind in (common_pb2.STORAGE_KIND_UNSPECIFIED, 99):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.CreateVm(
                m.CreateVmRequest(
                    name="k1", memory_mb=512, storage=common_pb2.StorageLocation(kind=kind, name="C")
                )
            )
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.details() == "storage.kind: must be csv, lun or local_disk"
    vms = (await stub.ListVms(m.ListVmsRequest())).vms
    assert [vm.name for vm in vms] == []


async def test_kill_9_during_creates_keeps_what_the_host_has_and_drops_the_rest(
    manager: ManagerProcess,
    loopback_agents: Agents,
    manager_processes: list[ManagerProcess],
) -> None:
    standalone = loopback_agents["standalone1"]
    async with grpc.aio.insecure_channel(manager.address) as channel:
        stub = Stub(channel)
        await all_hosts_ok(stub)
        # The host's CreateVm hangs: the manager dies between writing the record and the answer.
        async with Unanswering(standalone.port) as hole:
            await standalone.stop()

            async def reconnected() -> bool:  # the manager's next refresh reaches the hung server
                return hole.calls > 0

            await eventually(reconnected, what="the manager connecting to standalone1 again")
            ghost = (await stub.CreateVm(m.CreateVmRequest(name="ghost1", memory_mb=512, no_start=True))).vm
            kept = (await stub.CreateVm(m.CreateVmRequest(name="kept1", memory_mb=512, no_start=True))).vm
            assert ghost.state == common_pb2.VM_STATE_STARTING  # `creating` on the wire
            await asyncio.sleep(0.3)
            manager.kill9()
    await standalone.start()
    # This create reached the host: its agent has the VM, stopped.
    reached = local_vm(kept.id, "kept1", cpus=kept.cpus, disk_gb=kept.disk_gb)
    await behind_the_managers_back(standalone, reached, start=False)
    again = ManagerProcess(manager.topology, manager.state_dir)
    manager_processes.append(again)
    await again.start()
    async with grpc.aio.insecure_channel(again.address) as channel:
        stub = Stub(channel)

        async def settled() -> bool:
            names = {vm.name: vm for vm in (await stub.ListVms(m.ListVmsRequest())).vms}
            return "ghost1" not in names and names["kept1"].state == common_pb2.VM_STATE_STOPPED

        await eventually(settled, what="ghost1 removed and kept1 stopped")
        vm = (await stub.GetVm(m.GetVmRequest(name="kept1"))).vm
        assert vm.id == kept.id and not vm.imported
    assert on_agent(loopback_agents, "standalone1", ghost.id) is None


@pytest.mark.parametrize("value", ["nan", "inf", "0", "-1"])
def test_refresh_interval_must_be_finite_and_positive(tmp_path: Path, value: str) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "manager",
            "--insecure",
            "--topology",
            str(tmp_path / "t.yaml"),
            "--state-dir",
            str(tmp_path / "s"),
            "--listen",
            "127.0.0.1:0",
            f"--refresh-interval={value}",
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=20,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"havm-manager: error: --refresh-interval: must be a positive number of seconds, got {float(value)}"
    ]


async def test_undecodable_requests_are_invalid_argument_with_one_log_line(
    manager: ManagerProcess, stub: Stub
) -> None:
    from tests.contract.undecodable import codes_for_garbage

    service = manager_pb2.DESCRIPTOR.services_by_name["ManagerService"]
    with grpc.insecure_channel(manager.address) as channel:
        codes = await asyncio.to_thread(codes_for_garbage, channel, service)
    assert codes == dict.fromkeys(codes, grpc.StatusCode.INVALID_ARGUMENT), codes
    log = manager.log_path.read_text()
    assert "Traceback" not in log
    assert log.count("cannot be decoded") == len(service.methods)
    assert (await stub.GetStatus(manager_pb2.GetStatusRequest())).hosts_total > 0


@pytest.mark.parametrize(
    ("content", "sentence"),
    [
        (None, "cannot read {path}: No such file or directory"),
        ("not a secret\n", "{path} must hold 64 hexadecimal digits"),
    ],
)
def test_a_bad_heartbeat_secret_is_one_sentence(tmp_path: Path, content: str | None, sentence: str) -> None:
    path = tmp_path / "secret"
    if content is not None:
        path.write_text(content)
    topology = REPO_ROOT / "havm" / "cli" / "default_topology.yaml"
    argv = [sys.executable, "-m", "manager", "--insecure", "--topology", str(topology)]
    argv += ["--state-dir", str(tmp_path / "s")]
    argv += ["--listen", "127.0.0.1:0", "--heartbeat-secret", str(path)]
    result = subprocess.run(argv, capture_output=True, text=True, cwd=REPO_ROOT, timeout=20)
    assert result.returncode == 2
    expected = "havm-manager: error: --heartbeat-secret: " + sentence.format(path=path)
    assert result.stderr.strip().splitlines() == [expected]

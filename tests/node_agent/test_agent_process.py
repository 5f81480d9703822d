"""The real agent process over gRPC: inventory, VM lifecycle, errors, recovery."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from agent_testkit import (
    Agent,
    agent_command,
    config_file_data,
    config_file_text,
    host_config,
    open_channel,
    vm_spec,
    wait_until,
)
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from havm.ports import free_port
from havm.v1 import agent_pb2, agent_pb2_grpc, common_pb2
from node_agent.adapters.files import read_journal_records

pytestmark = pytest.mark.integration

GIB = 1024**3
OP = agent_pb2
ST = common_pb2
CSV = (common_pb2.STORAGE_KIND_CSV, "Volume1")
LUN = (common_pb2.STORAGE_KIND_LUN, "lun1")
LOCAL = (common_pb2.STORAGE_KIND_LOCAL_DISK, "C")


def rpc_error(call, *args) -> grpc.RpcError:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as info:
        call(*args)
    return info.value


def journal_seqs(disk: Path) -> list[int]:
    return [record.seq for record in read_journal_records(disk)]


def test_health_and_reflection(agent: Agent) -> None:
    for service in ("", "havm.v1.AgentService"):
        reply = agent.health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(agent.channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    reply = next(iter(stub.ServerReflectionInfo(iter([request]), timeout=5)))
    names = {s.name for s in reply.list_services_response.service}
    assert {"havm.v1.AgentService", "grpc.health.v1.Health"} <= names


def test_inventory_describes_the_host(agent: Agent, tmp_path: Path) -> None:
    host = agent.inventory().host
    assert (host.name, host.cluster, host.profile) == ("node1", "cluster1", ST.PROFILE_HYPERV_2008R2)
    assert (host.cpu.vendor, host.cpu.cores, host.cpu.mhz) == ("GenuineIntel", 8, 2933)
    assert list(host.cpu.features) == ["sse3", "sse4_2", "popcnt"]
    assert host.memory_mb == 8192 and host.memory_free_mb == 6144
    assert [(d.name, d.capacity_bytes, d.free_bytes) for d in host.disks] == [("C", 500 * GIB, 500 * GIB)]
    net = host.networks[0]
    assert (net.name, net.kind, net.bound_to, net.vlan_id) == (
        "External",
        ST.NETWORK_KIND_VIRTUAL_NETWORK,
        "Broadcom BCM5709C #1",
        0,
    )
    assert [(v.name, v.kind, v.capacity_bytes) for v in host.volumes] == [
        ("Volume1", ST.STORAGE_KIND_CSV, 2048 * GIB),
        ("lun1", ST.STORAGE_KIND_LUN, 200 * GIB),
    ]
    assert len(host.boot_id) == 32 and host.started_at.seconds > 0
    assert (tmp_path / "san" / "csv" / "Volume1").is_dir()
    assert (tmp_path / "san" / "lun" / "lun1").is_dir()


def test_esx_host_reports_port_groups(start_agent, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    agent = start_agent(host_config(tmp_path, name="esx1", profile="esx", cluster=None))
    host = agent.inventory().host
    assert host.profile == ST.PROFILE_ESX and host.cluster == ""
    assert host.networks[0].kind == ST.NETWORK_KIND_PORT_GROUP


def test_create_makes_a_sparse_disk_and_uses_storage(agent: Agent, tmp_path: Path) -> None:
    vm = agent.create(vm_spec(disk_gb=40, storage=CSV, highly_available=True))
    assert vm.state == ST.VM_STATE_STOPPED and vm.spec.highly_available
    vm_dir = tmp_path / "san" / "csv" / "Volume1" / "vm-1"
    disk = vm_dir / "disk0.vhd"
    assert disk.stat().st_size == 40 * GIB
    assert disk.stat().st_blocks * 512 < 1024 * 1024  # sparse: nothing allocated yet
    saved = json.loads((vm_dir / "vm.json").read_text())
    assert saved["owner_host"] == "node1" and saved["id"] == "vm-1" and saved["memory_mb"] == 1024
    registry = json.loads((agent.state_dir / "vms" / "vm-1.json").read_text())
    assert registry["power_state"] == "stopped" and registry["path"] == str(vm_dir)
    volume = {v.name: v for v in agent.inventory().host.volumes}["Volume1"]
    assert volume.free_bytes == (2048 - 40) * GIB

    agent.create(vm_spec("vm-2", "db1", disk_gb=100, storage=LOCAL))
    assert (agent.state_dir / "disks" / "C" / "vm-2" / "disk0.vhd").stat().st_size == 100 * GIB
    host = agent.inventory().host
    assert host.disks[0].free_bytes == 400 * GIB
    assert sorted(v.spec.id for v in agent.inventory().vms) == ["vm-1", "vm-2"]


def test_full_lifecycle(agent: Agent, tmp_path: Path) -> None:
    agent.create(vm_spec(memory_mb=2048))
    vm = agent.operate("vm-1", OP.VM_OPERATION_START)
    assert vm.state == ST.VM_STATE_RUNNING
    assert agent.inventory().host.memory_free_mb == 6144 - 2048

    wait_until(lambda: agent.guest("vm-1").journal_last_seq >= 3, what="journal writes")
    status = agent.guest("vm-1")
    assert status.memory_pages == 2048 * 256 and len(status.memory_digest) == 64

    assert agent.operate("vm-1", OP.VM_OPERATION_PAUSE).state == ST.VM_STATE_PAUSED
    paused = agent.guest("vm-1")
    time.sleep(0.3)
    still = agent.guest("vm-1")
    assert (still.journal_last_seq, still.memory_digest) == (paused.journal_last_seq, paused.memory_digest)
    assert agent.inventory().host.memory_free_mb == 6144 - 2048  # paused holds memory

    assert agent.operate("vm-1", OP.VM_OPERATION_RESUME).state == ST.VM_STATE_RUNNING
    wait_until(lambda: agent.guest("vm-1").journal_last_seq > paused.journal_last_seq, what="resume")

    saved = agent.operate("vm-1", OP.VM_OPERATION_SAVE)
    assert saved.state == ST.VM_STATE_SAVED
    vsv = tmp_path / "san" / "csv" / "Volume1" / "vm-1" / "memory.vsv"
    assert vsv.stat().st_size > 2048 * 256 * 4
    at_save = agent.guest("vm-1")
    assert at_save.memory_digest != "" and agent.inventory().host.memory_free_mb == 6144
    time.sleep(0.2)
    assert agent.guest("vm-1").journal_last_seq == at_save.journal_last_seq

    assert agent.operate("vm-1", OP.VM_OPERATION_RESTORE).state == ST.VM_STATE_RUNNING
    restored = agent.guest("vm-1")
    assert restored.memory_digest == at_save.memory_digest
    assert restored.journal_last_seq == at_save.journal_last_seq
    assert not vsv.exists()

    started = time.monotonic()
    assert agent.operate("vm-1", OP.VM_OPERATION_SHUTDOWN).state == ST.VM_STATE_STOPPED
    assert time.monotonic() - started >= 0.1  # the guest's grace period
    stopped = agent.guest("vm-1")
    assert stopped.memory_digest == "" and stopped.journal_last_seq > at_save.journal_last_seq

    # START from stopped is a fresh boot: memory all zero again, journal continues.
    agent.operate("vm-1", OP.VM_OPERATION_START)
    assert agent.operate("vm-1", OP.VM_OPERATION_TURN_OFF).state == ST.VM_STATE_STOPPED
    seqs = journal_seqs(tmp_path / "san" / "csv" / "Volume1" / "vm-1" / "disk0.vhd")
    assert seqs == list(range(1, len(seqs) + 1)) and seqs[-1] == agent.guest("vm-1").journal_last_seq

    agent.delete("vm-1")
    assert not (tmp_path / "san" / "csv" / "Volume1" / "vm-1").exists()
    assert not (agent.state_dir / "vms" / "vm-1.json").exists()
    assert rpc_error(agent.get, "vm-1").code() == grpc.StatusCode.NOT_FOUND


def test_start_from_saved_restores_and_turn_off_from_paused(agent: Agent) -> None:
    agent.create(vm_spec())
    agent.operate("vm-1", OP.VM_OPERATION_START)
    agent.operate("vm-1", OP.VM_OPERATION_PAUSE)
    digest = agent.guest("vm-1").memory_digest
    agent.operate("vm-1", OP.VM_OPERATION_SAVE)
    assert agent.operate("vm-1", OP.VM_OPERATION_START).state == ST.VM_STATE_RUNNING
    assert agent.guest("vm-1").memory_digest == digest
    agent.operate("vm-1", OP.VM_OPERATION_PAUSE)
    assert agent.operate("vm-1", OP.VM_OPERATION_TURN_OFF).state == ST.VM_STATE_STOPPED
    assert agent.inventory().host.memory_free_mb == 6144


def test_memory_that_does_not_fit(agent: Agent) -> None:
    agent.create(vm_spec("vm-1", "web1", memory_mb=5120))
    agent.create(vm_spec("vm-2", "web2", memory_mb=2048))
    agent.operate("vm-1", OP.VM_OPERATION_START)
    error = rpc_error(agent.operate, "vm-2", OP.VM_OPERATION_START)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.details() == "not enough memory on node1 to start web2: needs 2048 MB, 1024 MB available"
    assert agent.get("vm-2").state == ST.VM_STATE_STOPPED

    # A saved VM cannot be restored into memory that another VM took meanwhile.
    agent.operate("vm-1", OP.VM_OPERATION_SAVE)
    agent.create(vm_spec("vm-3", "web3", memory_mb=4096))
    agent.operate("vm-3", OP.VM_OPERATION_START)
    error = rpc_error(agent.operate, "vm-1", OP.VM_OPERATION_RESTORE)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert agent.get("vm-1").state == ST.VM_STATE_SAVED


def test_storage_rules(agent: Agent) -> None:
    error = rpc_error(agent.create, vm_spec(disk_gb=501, storage=LOCAL))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "local disk C" in error.details()
    agent.create(vm_spec("vm-1", "a", storage=LUN))
    error = rpc_error(agent.create, vm_spec("vm-2", "b", storage=LUN))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error.details().startswith("LUN lun1 already holds VM vm-1")
    error = rpc_error(agent.create, vm_spec("vm-3", "c", storage=(ST.STORAGE_KIND_LUN, "lun3")))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error.details() == "host node1 cannot see LUN lun3"


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (vm_spec(vm_id=""), "spec.id"),
        (vm_spec(name=""), "spec.name"),
        (vm_spec(memory_mb=0), "spec.memory_mb"),
        (vm_spec(cpus=9), "spec.cpus"),
        (vm_spec(disk_gb=0), "spec.disk_gb"),
        (vm_spec(networks=["Nope"]), "spec.networks"),
        (vm_spec(storage=(ST.STORAGE_KIND_UNSPECIFIED, "C")), "spec.storage.kind"),
    ],
)
def test_bad_create_requests(agent: Agent, spec: common_pb2.VmSpec, field: str) -> None:
    error = rpc_error(agent.create, spec)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith(f"{field}:"), error.details()


def test_errors_of_operations(agent: Agent) -> None:
    agent.create(vm_spec())
    error = rpc_error(agent.create, vm_spec())
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    error = rpc_error(agent.stub.CreateVm, agent_pb2.AgentServiceCreateVmRequest())
    assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "spec: is required")

    error = rpc_error(agent.operate, "vm-1", OP.VM_OPERATION_PAUSE)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error.details() == "VM web1 is stopped; it cannot be paused"
    error = rpc_error(agent.operate, "vm-1", OP.VM_OPERATION_UNSPECIFIED)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("operation:")
    error = rpc_error(agent.operate, "nope", OP.VM_OPERATION_START)
    assert error.code() == grpc.StatusCode.NOT_FOUND and "nope" in error.details()
    error = rpc_error(agent.guest, "")
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT

    agent.operate("vm-1", OP.VM_OPERATION_START)
    error = rpc_error(agent.operate, "vm-1", OP.VM_OPERATION_START)
    assert error.details() == "VM web1 is running; it cannot be started"
    error = rpc_error(agent.delete, "vm-1")
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "cannot be deleted" in error.details()
    assert agent.get("vm-1").state == ST.VM_STATE_RUNNING


def test_kill_9_and_restart_finds_every_vm(start_agent, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = host_config(tmp_path)
    first = start_agent(config)
    for vm_id, name in [("vm-run", "run"), ("vm-pause", "pause"), ("vm-save", "save"), ("vm-stop", "stop")]:
        first.create(vm_spec(vm_id, name, memory_mb=512))
    for vm_id in ("vm-run", "vm-pause", "vm-save"):
        first.operate(vm_id, OP.VM_OPERATION_START)
    wait_until(lambda: first.guest("vm-run").journal_last_seq >= 5, what="journal writes")
    first.operate("vm-pause", OP.VM_OPERATION_PAUSE)
    first.operate("vm-save", OP.VM_OPERATION_SAVE)
    saved_digest = first.guest("vm-save").memory_digest
    boot = first.inventory().host.boot_id
    acknowledged = first.guest("vm-run").journal_last_seq  # the last write reported done
    first.kill9()
    disk = tmp_path / "san" / "csv" / "Volume1" / "vm-run" / "disk0.vhd"
    before = journal_seqs(disk)
    assert before, "the journal was written before the crash"
    assert acknowledged <= before[-1], "an acknowledged write is on the disk after kill -9"

    second = start_agent(config, state_dir=first.state_dir)
    assert second.inventory().host.boot_id != boot
    states = {vm.spec.id: vm.state for vm in second.inventory().vms}
    assert states == {
        "vm-run": ST.VM_STATE_RUNNING,
        "vm-pause": ST.VM_STATE_RUNNING,  # it was running when the service stopped
        "vm-save": ST.VM_STATE_SAVED,
        "vm-stop": ST.VM_STATE_STOPPED,
    }
    assert second.inventory().host.memory_free_mb == 6144 - 1024
    wait_until(lambda: second.guest("vm-run").journal_last_seq > before[-1], what="journal continues")
    after = journal_seqs(disk)
    assert after[: len(before)] == before
    assert after == list(range(1, len(after) + 1)), "no seq repeated, none skipped"
    assert acknowledged <= after[-1], "writes acknowledged before the crash survive the restart"
    assert acknowledged <= second.guest("vm-run").journal_last_seq
    assert second.operate("vm-save", OP.VM_OPERATION_RESTORE).state == ST.VM_STATE_RUNNING
    assert second.guest("vm-save").memory_digest == saved_digest


def test_sigterm_stops_cleanly_and_running_vms_come_back(start_agent, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = host_config(tmp_path)
    first = start_agent(config)
    first.create(vm_spec())
    first.operate("vm-1", OP.VM_OPERATION_START)
    assert first.terminate() == 0
    log = first.log()
    assert "stopping" in log and "Traceback" not in log
    for line in log.splitlines():
        assert " node1: " in line and line[:4].isdigit() and "Z " in line, line
    second = start_agent(config, state_dir=first.state_dir)
    assert second.get("vm-1").state == ST.VM_STATE_RUNNING


def _run_agent(
    argv_tail: list[str], tmp_path: Path, security: tuple[str, ...] = ("--insecure",)
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "node_agent", *security, *argv_tail],
        capture_output=True,
        text=True,
        timeout=20,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda c: c["cpu"].update(cores=0), "cpu.cores: must be a positive integer"),
        (lambda c: c.update(profile="hyperv-2012"), "profile: must be one of PROFILE_HYPERV_2008"),
        (lambda c: c.update(profile="PROFILE_UNSPECIFIED"), "profile: must be one of PROFILE_HYPERV_2008"),
        (lambda c: c["volumes"][0].update(kind="STORAGE_KIND_LOCAL_DISK"), "volumes[0].kind: must be"),
        (lambda c: c["disks"][0].update(capacity_bytes="1000"), "disks[0].capacity_bytes: must be a whole"),
        (lambda c: c.update(timing={"isolation_timeout_s": -1}), "timing.isolation_timeout_s: must be"),
        (lambda c: c.update(memory_mb="lots"), "memory_mb"),
    ],
)
def test_bad_config_exits_2_with_one_line(tmp_path: Path, mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    config = config_file_data(host_config(tmp_path))
    mutate(config)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(config))
    result = _run_agent(
        ["--config", str(path), "--state-dir", str(tmp_path / "s"), "--listen", f"127.0.0.1:{free_port()}"],
        tmp_path,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--listen", "nowhere"], "--listen: expected HOST:PORT"),
        (["--listen", "127.0.0.1:1", "--broker", "x:y"], "--broker: expected HOST:PORT"),
        (["--listen", "127.0.0.1:1", "--config", "/nonexistent.json"], "--config: cannot read"),
        (["--listen", "127.0.0.1:1", "--log-level", "loud"], "--log-level"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    config = tmp_path / "node1.json"
    config.write_text(config_file_text(host_config(tmp_path)))
    base = {"--config": str(config), "--state-dir": str(tmp_path / "s")}
    for i in range(0, len(args), 2):
        base[args[i]] = args[i + 1]
    argv = [x for pair in base.items() for x in pair]
    result = _run_agent(argv, tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


DEFAULT_TOPOLOGY = Path(__file__).parents[2] / "havm" / "cli" / "default_topology.yaml"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--topology", str(DEFAULT_TOPOLOGY), "--san-root", "/tmp"],
            "this machine's host name (give --host)",
        ),
        (["--topology", str(DEFAULT_TOPOLOGY), "--host", "node1"], "--topology needs --san-root DIR"),
        (
            ["--topology", str(DEFAULT_TOPOLOGY), "--host", "node9", "--san-root", "/tmp"],
            "has no host named 'node9' (hosts: node1, node2, node3, node4, standalone1, library1)",
        ),
        (
            ["--topology", "/nonexistent.yaml", "--host", "x", "--san-root", "/tmp"],
            "--topology /nonexistent.yaml: cannot read it",
        ),
        (
            ["--config", "/x.json", "--host", "node1"],
            "--host, --san-root and --heartbeat-secret go with --topology",
        ),
        ([], "one of the arguments --config --topology is required"),
    ],
)
def test_bad_topology_mode_arguments_exit_2_with_one_line(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = _run_agent(["--state-dir", str(tmp_path / "s"), "--listen", "127.0.0.1:1", *args], tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


@pytest.mark.parametrize(
    ("security", "message"),
    [
        ((), "one of the arguments --identity --insecure is required"),
        (("--identity", "/nonexistent.pem"), "--identity: /nonexistent.pem: cannot read it"),
        (("--identity", "/etc/hostname"), "--identity: /etc/hostname: holds no PEM certificate"),
        (("--identity", "{reader}"), "holds the reader identity 'reader', not the agent identity 'node1'"),
        (
            ("--identity", "{node1}"),
            "names no cluster for host node1, whose configuration says cluster1",
        ),
    ],
)
def test_an_agent_must_be_given_an_identity_or_insecure(
    tmp_path: Path, security: tuple[str, ...], message: str
) -> None:
    from havm.cli.cluster_pki import issue, load_or_create_ca
    from havm.contract.identity import Role

    ca = load_or_create_ca(tmp_path / "pki")
    files = {"reader": issue(ca, Role.READER, "reader"), "node1": issue(ca, Role.AGENT, "node1")}
    for name, data in files.items():
        (tmp_path / f"{name}.pem").write_bytes(data)
    security = tuple(arg.format(**{n: tmp_path / f"{n}.pem" for n in files}) for arg in security)
    argv = ["--topology", str(DEFAULT_TOPOLOGY), "--host", "node1", "--san-root", str(tmp_path / "san")]
    result = _run_agent(
        [*argv, "--state-dir", str(tmp_path / "s"), "--listen", "127.0.0.1:1"], tmp_path, security
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_an_agent_takes_its_host_from_the_topology(tmp_path: Path) -> None:
    """The container form: the cluster's topology, the host's name and the shared SAN."""
    address = f"127.0.0.1:{free_port()}"
    argv = [sys.executable, "-m", "node_agent", "--insecure", "--topology", str(DEFAULT_TOPOLOGY)]
    argv += ["--host", "node3"]
    argv += ["--san-root", str(tmp_path / "san"), "--state-dir", str(tmp_path / "s"), "--listen", address]
    proc = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL
    )
    try:
        with open_channel(address) as channel:
            grpc.channel_ready_future(channel).result(timeout=10)
            stub = agent_pb2_grpc.AgentServiceStub(channel)
            host = stub.GetInventory(agent_pb2.AgentServiceGetInventoryRequest(), timeout=10).host
        assert (host.name, host.cluster, host.memory_mb) == ("node3", "cluster1", 32768)
        assert sorted(v.name for v in host.volumes) == ["Volume1", "lun1", "lun2", "lun3"]
        assert (tmp_path / "san").is_dir()
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_start_up_is_fast(tmp_path: Path) -> None:
    config = tmp_path / "node1.json"
    config.write_text(config_file_text(host_config(tmp_path)))
    address = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    proc = subprocess.Popen(
        agent_command(config, tmp_path / "s", address),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        with open_channel(address) as channel:
            grpc.channel_ready_future(channel).result(timeout=10)
        elapsed = time.monotonic() - started
        # The target is well under a second; the margin absorbs a loaded test machine.
        assert elapsed < 3.0, f"SERVING after {elapsed:.2f} s"
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_another_host_takes_over_a_vm_on_shared_storage(start_agent, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Failover: node2 creates the VM again from its files on the CSV; the journal survives."""
    config1 = host_config(tmp_path, name="node1")
    config2 = host_config(tmp_path, name="node2", volumes=[config1["volumes"][0]])
    node1 = start_agent(config1)
    node2 = start_agent(config2)
    node1.create(vm_spec())
    node1.operate("vm-1", OP.VM_OPERATION_START)
    wait_until(lambda: node1.guest("vm-1").journal_last_seq >= 3, what="journal writes")
    node1.kill9()
    disk = tmp_path / "san" / "csv" / "Volume1" / "vm-1" / "disk0.vhd"
    acknowledged = journal_seqs(disk)

    # Both hosts see the same free space on the shared volume.
    volume = {v.name: v for v in node2.inventory().host.volumes}["Volume1"]
    assert volume.free_bytes == (2048 - 10) * GIB
    error = rpc_error(node2.create, vm_spec("vm-2", "b", storage=LUN))
    assert error.details() == "host node2 cannot see LUN lun1"

    assert rpc_error(node2.create, vm_spec()).code() == grpc.StatusCode.ALREADY_EXISTS
    vm = node2.take_over(vm_spec(), 2)
    assert vm.state == ST.VM_STATE_STOPPED and vm.lease_generation == 2
    owner = json.loads((disk.parent / "vm.json").read_text())["owner_host"]
    assert owner == "node2"
    node2.operate("vm-1", OP.VM_OPERATION_START)
    wait_until(lambda: node2.guest("vm-1").journal_last_seq > acknowledged[-1], what="journal on node2")
    seqs = journal_seqs(disk)
    assert seqs[: len(acknowledged)] == acknowledged and seqs == list(range(1, len(seqs) + 1))

    # node1 comes back: the VM is no longer its own, so it neither reports nor runs it.
    node1_again = start_agent(config1, state_dir=node1.state_dir)
    assert [v.spec.id for v in node1_again.inventory().vms] == []
    assert disk.exists()


def test_quick_migration_through_shared_storage(start_agent, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Save on node1, create on node2 (it finds the saved state), delete on node1, restore."""
    node1 = start_agent(host_config(tmp_path, name="node1"))
    node2 = start_agent(host_config(tmp_path, name="node2"))
    node1.create(vm_spec(storage=LUN))
    node1.operate("vm-1", OP.VM_OPERATION_START)
    wait_until(lambda: node1.guest("vm-1").journal_last_seq >= 2, what="journal writes")
    node1.operate("vm-1", OP.VM_OPERATION_SAVE)
    at_save = node1.guest("vm-1")

    assert node2.take_over(vm_spec(storage=LUN), 2).state == ST.VM_STATE_SAVED
    node1.delete("vm-1")  # the files now belong to node2: node1 only forgets the VM
    assert (tmp_path / "san" / "lun" / "lun1" / "vm-1" / "memory.vsv").exists()
    assert [v.spec.id for v in node1.inventory().vms] == []

    assert node2.operate("vm-1", OP.VM_OPERATION_RESTORE).state == ST.VM_STATE_RUNNING
    restored = node2.guest("vm-1")
    assert restored.memory_digest == at_save.memory_digest
    assert restored.journal_last_seq == at_save.journal_last_seq


def test_an_operation_finishes_when_its_caller_gives_up(agent: Agent) -> None:
    agent.create(vm_spec())
    agent.operate("vm-1", OP.VM_OPERATION_START)
    request = agent_pb2.AgentServiceOperateVmRequest(vm_id="vm-1", operation=OP.VM_OPERATION_SHUTDOWN)
    error = rpc_error(lambda: agent.stub.OperateVm(request, timeout=0.03))
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    wait_until(lambda: agent.get("vm-1").state == ST.VM_STATE_STOPPED, what="shutdown to finish")
    assert "Traceback" not in agent.log()


def test_unset_rates_take_the_defaults_and_zero_is_an_idle_guest(agent: Agent) -> None:
    spec = vm_spec()
    spec.workload.CopyFrom(common_pb2.GuestWorkload())
    vm = agent.create(spec)
    assert vm.spec.workload.dirty_rate_mb_per_s == 1.0
    assert vm.spec.workload.journal_writes_per_s == 2.0
    agent.operate("vm-1", OP.VM_OPERATION_START)
    wait_until(lambda: agent.guest("vm-1").journal_last_seq >= 1, what="default 2 writes/s")

    idle = vm_spec("vm-2", "idle")
    idle.workload.CopyFrom(common_pb2.GuestWorkload(dirty_rate_mb_per_s=0, journal_writes_per_s=0))
    agent.create(idle)
    agent.operate("vm-2", OP.VM_OPERATION_START)
    before = agent.guest("vm-2")
    time.sleep(0.5)
    after = agent.guest("vm-2")
    assert after.journal_last_seq == 0
    assert after.memory_digest == before.memory_digest


@pytest.mark.parametrize(
    ("field", "value", "shown"),
    [
        ("dirty_rate_mb_per_s", float("inf"), "inf"),
        ("dirty_rate_mb_per_s", float("nan"), "nan"),
        ("dirty_rate_mb_per_s", 1e9, "1e+09"),
        ("journal_writes_per_s", float("inf"), "inf"),
    ],
)
def test_guest_rates_out_of_range_are_refused(agent: Agent, field: str, value: float, shown: str) -> None:
    spec = vm_spec()
    setattr(spec.workload, field, value)
    error = rpc_error(agent.create, spec)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == f"spec.workload.{field}: must be a finite number from 0 to 10000, got {shown}"
    assert not agent.inventory().vms
    assert "Traceback" not in agent.log()


def _save_then_lose_the_image(agent: Agent, tmp_path: Path, vm_id: str, name: str) -> Path:
    agent.create(vm_spec(vm_id, name))
    agent.operate(vm_id, OP.VM_OPERATION_START)
    agent.operate(vm_id, OP.VM_OPERATION_SAVE)
    vm_dir = tmp_path / "san" / "csv" / "Volume1" / vm_id
    (vm_dir / "memory.vsv").unlink()
    return vm_dir


def test_restore_without_its_saved_state_fails_the_vm(agent: Agent, tmp_path: Path) -> None:
    _save_then_lose_the_image(agent, tmp_path, "vm-1", "web1")
    error = rpc_error(agent.operate, "vm-1", OP.VM_OPERATION_RESTORE)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error.details() == "VM web1 cannot be restored: its saved state file is missing"
    vm = agent.get("vm-1")
    assert (vm.state, vm.reason) == (ST.VM_STATE_FAILED, "its saved state file is missing")
    assert agent.inventory().host.memory_free_mb == 6144
    error = rpc_error(agent.operate, "vm-1", OP.VM_OPERATION_RESTORE)
    assert error.details() == "VM web1 is failed; it cannot be restored"

    vm = agent.operate("vm-1", OP.VM_OPERATION_TURN_OFF)
    assert (vm.state, vm.reason) == (ST.VM_STATE_STOPPED, "")
    assert agent.operate("vm-1", OP.VM_OPERATION_START).state == ST.VM_STATE_RUNNING


def test_recovery_and_restore_agree_on_a_missing_saved_state(start_agent, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = host_config(tmp_path)
    first = start_agent(config)
    _save_then_lose_the_image(first, tmp_path, "vm-1", "web1")
    rpc_error(first.operate, "vm-1", OP.VM_OPERATION_RESTORE)
    at_runtime = first.get("vm-1")
    first.create(vm_spec("vm-2", "web2"))
    first.operate("vm-2", OP.VM_OPERATION_START)
    first.operate("vm-2", OP.VM_OPERATION_SAVE)
    (tmp_path / "san" / "csv" / "Volume1" / "vm-2" / "memory.vsv").unlink()
    first.kill9()

    second = start_agent(config, state_dir=first.state_dir)
    at_recovery = second.get("vm-2")
    assert (at_recovery.state, at_recovery.reason) == (at_runtime.state, at_runtime.reason)
    assert second.get("vm-1").state == ST.VM_STATE_FAILED


def test_a_failed_vm_can_be_deleted_with_its_files(agent: Agent, tmp_path: Path) -> None:
    vm_dir = _save_then_lose_the_image(agent, tmp_path, "vm-1", "web1")
    rpc_error(agent.operate, "vm-1", OP.VM_OPERATION_RESTORE)
    assert agent.get("vm-1").state == ST.VM_STATE_FAILED
    agent.delete("vm-1")
    assert not vm_dir.exists()
    assert rpc_error(agent.get, "vm-1").code() == grpc.StatusCode.NOT_FOUND
    assert not agent.inventory().vms
    agent.create(vm_spec("vm-1", "web1"))  # the id is free again


def test_undecodable_requests_are_invalid_argument_with_one_log_line(agent: Agent) -> None:
    from tests.contract.undecodable import codes_for_garbage

    services = [agent_pb2.DESCRIPTOR.services_by_name[s] for s in ("AgentService", "HostAdminService")]
    with open_channel(agent.address) as channel:
        for service in services:
            codes = codes_for_garbage(channel, service)
            assert codes == dict.fromkeys(codes, grpc.StatusCode.INVALID_ARGUMENT), codes
    log = agent.log()
    assert "Traceback" not in log, log
    assert log.count("cannot be decoded") == sum(len(service.methods) for service in services)
    # The agent still serves.
    assert agent.inventory().host.name == "node1"

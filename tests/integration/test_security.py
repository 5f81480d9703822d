"""The attacks of a local process on a running cluster, each made for real and each
now without effect: calls without a certificate, with a certificate of another CA,
with the wrong role; an administrator's take-over on an agent; a migration stream
from a host of another cluster. And what `havm up` leaves on disk: only its owner can
read the state directory and the identities.
"""

from __future__ import annotations

import asyncio
import json
import stat
import threading
import time
import uuid
from pathlib import Path

import aiomqtt
import grpc
import pytest
from cluster_harness import LocalCluster, inventory, start_cluster, stop_cluster, wait_for
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from havm.cli.cluster_pki import issue, load_or_create_ca
from havm.contract.identity import MANAGER_NAME, Role, parse_identity, read_identity_file, sync_channel
from havm.v1 import agent_pb2, agent_pb2_grpc, common_pb2, manager_pb2, manager_pb2_grpc

pytestmark = pytest.mark.integration
SERVING = health_pb2.HealthCheckResponse.SERVING


def refused(call, request, code: grpc.StatusCode) -> str:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=5)
    assert caught.value.code() == code, caught.value.details()
    return caught.value.details() or ""


def spec(name: str) -> common_pb2.VmSpec:
    return common_pb2.VmSpec(
        id=str(uuid.uuid4()),
        name=name,
        memory_mb=128,
        cpus=1,
        disk_gb=1,
        storage=common_pb2.StorageLocation(kind=common_pb2.STORAGE_KIND_LOCAL_DISK, name="C"),
    )


def test_calls_without_a_certificate_of_the_clusters_ca_are_not_served(
    default_cluster: LocalCluster, tmp_path: Path
) -> None:
    foreign = parse_identity(issue(load_or_create_ca(tmp_path / "other"), Role.ADMIN, "admin"), "foreign")
    check = health_pb2.HealthCheckRequest()
    for name in ("manager", "agent:node1"):
        address = default_cluster.component(name)["address"]
        peer = MANAGER_NAME if name == "manager" else "node1"
        with default_cluster.channel(name) as channel:
            assert health_pb2_grpc.HealthStub(channel).Check(check, timeout=5).status == SERVING
        for channel in (grpc.insecure_channel(address), sync_channel(address, foreign, peer)):
            with channel:
                refused(health_pb2_grpc.HealthStub(channel).Check, check, grpc.StatusCode.UNAVAILABLE)
    # The CLI says so in one sentence.
    result = default_cluster.havm("--identity", str(tmp_path / "missing.pem"), "vm", "list")
    assert result.code == 1 and "--identity:" in result.stderr and "cannot read it" in result.stderr


def test_a_reader_reads_but_cannot_change_anything(default_cluster: LocalCluster) -> None:
    reader = str(default_cluster.state_dir / "pki" / "clients" / "reader.pem")
    assert default_cluster.havm("--identity", reader, "vm", "list").code == 0
    result = default_cluster.havm("--identity", reader, "vm", "create", "nope", "--memory-mb", "128")
    assert result.code == 1
    assert (
        result.stderr.strip()
        == "error: CreateVm needs the operator or admin role; the identity 'reader' is reader"
    )
    assert "nope" not in default_cluster.ok("vm", "list").stdout
    with default_cluster.channel("manager", role="reader") as channel:
        stub = manager_pb2_grpc.ManagerServiceStub(channel)
        assert stub.ListHosts(manager_pb2.ListHostsRequest(), timeout=5).hosts
        refused(stub.DeleteVm, manager_pb2.DeleteVmRequest(name="x"), grpc.StatusCode.PERMISSION_DENIED)
        refused(stub.RefreshCluster, manager_pb2.RefreshClusterRequest(), grpc.StatusCode.PERMISSION_DENIED)
        # Reflection, which lists the whole API, is the admin's alone.
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            list(
                reflection.ServerReflectionInfo(
                    iter([reflection_pb2.ServerReflectionRequest(list_services="")])
                )
            )
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with default_cluster.channel("manager") as channel:
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = list(
            reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        )
        assert any(s.name == "havm.v1.ManagerService" for s in replies[0].list_services_response.service)


def test_an_operator_runs_vms_but_does_not_change_the_topology(default_cluster: LocalCluster) -> None:
    operator = str(default_cluster.state_dir / "pki" / "clients" / "operator.pem")
    default_cluster.ok(
        "--identity",
        operator,
        "vm",
        "create",
        "op1",
        "--memory-mb",
        "128",
        "--host",
        "standalone1",
        "--no-start",
    )
    try:
        result = default_cluster.havm("--identity", operator, "cluster", "set", "cluster1", "--reserve", "2")
        assert result.code == 1
        assert (
            result.stderr.strip()
            == "error: UpdateCluster needs the admin role; the identity 'operator' is operator"
        )
        result = default_cluster.havm("--identity", operator, "host", "remove", "standalone1")
        assert result.code == 1 and "RemoveHost needs the admin role" in result.stderr
    finally:
        default_cluster.ok("vm", "delete", "op1")


def test_an_agent_takes_orders_from_the_manager_and_admins_only(default_cluster: LocalCluster) -> None:
    with default_cluster.channel("agent:standalone1", role="operator") as channel:
        stub = agent_pb2_grpc.AgentServiceStub(channel)
        details = refused(
            stub.GetInventory, agent_pb2.AgentServiceGetInventoryRequest(), grpc.StatusCode.PERMISSION_DENIED
        )
        assert details == (
            "host standalone1 takes GetInventory only from the manager or an admin identity; "
            "operator identity 'operator' is neither"
        )
    with default_cluster.channel("agent:node2") as channel:
        stub = agent_pb2_grpc.AgentServiceStub(channel)
        stub.GetInventory(agent_pb2.AgentServiceGetInventoryRequest(), timeout=5)  # an admin may look
        details = refused(
            stub.CreateVm,
            agent_pb2.AgentServiceCreateVmRequest(
                spec=spec("stolen"), take_over=True, lease_generation=10**6
            ),
            grpc.StatusCode.PERMISSION_DENIED,
        )
        assert details.startswith("taking VM stolen over is ordered by the manager only")
        details = refused(
            lambda request, timeout: list(stub.MigrateVm(request, timeout=timeout)),
            agent_pb2.AgentServiceMigrateVmRequest(vm_id="x", destination_host="node3"),
            grpc.StatusCode.PERMISSION_DENIED,
        )
        assert details == "MigrateVm is ordered by the manager only; admin identity 'admin' may not"
        inventory = stub.GetInventory(agent_pb2.AgentServiceGetInventoryRequest(), timeout=5)
        assert "stolen" not in {vm.spec.name for vm in inventory.vms}


def test_migration_streams_come_only_from_nodes_of_the_same_cluster(default_cluster: LocalCluster) -> None:
    address = default_cluster.component("agent:node1")["address"]
    pki = default_cluster.state_dir / "pki"
    for identity_file, sentence in (
        (
            pki / "agents" / "standalone1.pem",
            "host node1 takes migration streams only from nodes of its cluster; it is in cluster cluster1, "
            "agent identity 'standalone1' is not",
        ),
        (
            pki / "clients" / "admin.pem",
            "host node1 takes migration streams only from agents; admin identity 'admin' is not one",
        ),
    ):
        with sync_channel(address, read_identity_file(identity_file), "node1") as channel:
            stream = agent_pb2_grpc.AgentServiceStub(channel).ReceiveMigration(
                iter([agent_pb2.AgentServiceReceiveMigrationRequest()]), timeout=5
            )
            with pytest.raises(grpc.RpcError) as caught:
                list(stream)
            assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert caught.value.details() == sentence


def test_the_state_directory_and_the_identities_are_the_owners_alone(default_cluster: LocalCluster) -> None:
    state = default_cluster.state_dir
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    pki = state / "pki"
    files = [
        pki / "ca.key",
        pki / "ca.pem",
        pki / "manager.pem",
        *pki.glob("agents/*.pem"),
        *pki.glob("clients/*"),
    ]
    assert len(files) == 3 + 6 + 3  # the CA's, one per agent (library server included), clients
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for directory in (pki, pki / "agents", pki / "clients"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory


def test_an_insecure_cluster_is_plaintext_and_says_so(tmp_path: Path) -> None:
    cluster = start_cluster(
        tmp_path / "plain", "--insecure", "--topology", str(Path(__file__).parent / "console_topology.yaml")
    )
    try:
        assert cluster.context()["security"] == "insecure"
        with grpc.insecure_channel(cluster.component("manager")["address"]) as channel:
            hosts = manager_pb2_grpc.ManagerServiceStub(channel).ListHosts(
                manager_pb2.ListHostsRequest(), timeout=5
            )
            assert hosts.hosts
        assert "INSECURE" in (tmp_path / "plain" / "logs" / "manager.log").read_text()
        assert not (tmp_path / "plain" / "pki").exists()
        result = cluster.havm("up", "--detach")
        assert result.code == 1
        assert "runs in plaintext (--insecure): a `havm up` cannot change that while it runs" in result.stderr
    finally:
        stop_cluster(cluster)


def test_an_ha_vm_an_admin_turns_off_on_its_host_is_started_again(default_cluster: LocalCluster) -> None:
    default_cluster.ok("vm", "create", "behind1", "--ha", "--memory-mb", "128", "--host", "node3")
    vm_id = default_cluster.json("vm", "show", "behind1")["id"]
    try:
        with default_cluster.channel("agent:node3") as channel:
            request = agent_pb2.AgentServiceOperateVmRequest(
                vm_id=vm_id, operation=agent_pb2.VM_OPERATION_TURN_OFF
            )
            agent_pb2_grpc.AgentServiceStub(channel).OperateVm(request, timeout=5)
        default_cluster.ok("cluster", "refresh", "node3")
        wait_for(
            lambda: default_cluster.json("vm", "show", "behind1")["state"] == "running",
            timeout=20,
            what="behind1 running again",
        )
        lines = default_cluster.ok("events", "-o", "json", "--last", "200").stdout.splitlines()
        said = [e["detail"] for e in map(json.loads, lines) if e["kind"] == "outside_change"]
        assert said == [
            "VM behind1 was turned off on host node3 outside the manager; starting it again there, "
            "as a cluster brings a failed resource back online"
        ]
        assert inventory_states(default_cluster, "node3", vm_id) == [common_pb2.VM_STATE_RUNNING]
    finally:
        default_cluster.ok("vm", "stop", "behind1")
        default_cluster.ok("vm", "delete", "behind1")


def inventory_states(cluster: LocalCluster, host: str, vm_id: str) -> list[int]:
    return [vm.state for vm in inventory(cluster, host) or [] if vm.spec.id == vm_id]


def test_on_mosquitto_a_forger_with_another_hosts_login_cannot_keep_a_powered_off_host_alive(
    tmp_path: Path,
) -> None:
    """The broker `havm up --mqtt-broker mosquitto` writes the rules of: node1's login
    publishing node2's heartbeats and an `online` status for it reaches nobody, and
    node2, powered off, is fenced and its VM restarts on node1 meanwhile."""
    cluster = start_cluster(
        tmp_path / "mosquitto",
        "--mqtt-broker",
        "mosquitto",
        "--topology",
        str(Path(__file__).parent / "console_topology.yaml"),
    )
    stop = threading.Event()
    sent: list[int] = []

    def forge() -> None:
        async def run() -> None:
            host, port = cluster.component("broker")["address"].rsplit(":", 1)
            login = cluster.broker_login("host/node1")
            async with aiomqtt.Client(host, int(port), identifier="forger", **login) as client:
                seq = 10**6
                while not stop.is_set():
                    seq += 1
                    beat = {"host": "node2", "seq": seq, "time": time.time(), "boot_id": "forged"}
                    await client.publish("havm/v1/hosts/node2/heartbeat", json.dumps(beat))
                    status = {"state": "online", "host": "node2", "boot_id": "forged", "forged": True}
                    await client.publish("havm/v1/hosts/node2/status", json.dumps(status), retain=True)
                    sent.append(seq)
                    await asyncio.sleep(0.2)

        asyncio.run(run())

    try:
        assert "mosquitto" in cluster.component("broker")["argv"][0]
        cluster.ok("vm", "create", "moved1", "--ha", "--memory-mb", "128", "--host", "node2")
        forger = threading.Thread(target=forge, daemon=True)
        forger.start()
        wait_for(lambda: len(sent) > 3, timeout=10, what="the forger publishing")
        cluster.ok("fault", "power-off", "node2")
        wait_for(
            lambda: (
                cluster.json("vm", "show", "moved1")["host"] == "node1"
                and cluster.json("vm", "show", "moved1")["state"] == "running"
            ),
            timeout=30,
            interval=0.3,
            what="moved1 running on node1",
        )
        assert {h["name"]: h["state"] for h in cluster.json("host", "list")}["node2"] == "fenced"
        # Nothing of the forger's reached the manager: no signature was even to check.
        lines = cluster.ok("events", "-o", "json", "--last", "500").stdout.splitlines()
        assert not [e for e in map(json.loads, lines) if e["kind"] == "security"]
        # The broker kept node2's own retained status, not the forged one.
        retained = asyncio.run(retained_status(cluster, "node2"))
        assert (
            retained.get("host") == "node2"
            and "forged" not in retained
            and retained.get("boot_id") != "forged"
        )
    finally:
        stop.set()
        stop_cluster(cluster)


async def retained_status(cluster: LocalCluster, host: str) -> dict:
    address, port = cluster.component("broker")["address"].rsplit(":", 1)
    topic = f"havm/v1/hosts/{host}/status"
    async with aiomqtt.Client(
        address, int(port), identifier="status-reader", **cluster.broker_login()
    ) as client:
        await client.subscribe(topic, qos=1)
        async with asyncio.timeout(5):
            async for message in client.messages:
                if str(message.topic) == topic:
                    return json.loads(message.payload)
    raise AssertionError(f"no retained status for {host}")

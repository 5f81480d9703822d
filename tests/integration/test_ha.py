"""High availability end to end: real agents, manager, broker and fault relay, broken
the way real clusters break, and checked for the one thing that must never happen (a
VM running on two hosts) after every fault, and for every HA VM running exactly once
after the cluster recovers."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import aiomqtt
import grpc
import pytest
from cluster_harness import (
    ACTIVE_STATES,
    LocalCluster,
    active_copies,
    agent_names,
    alive,
    assert_invariant,
    inventory,
    start_cluster,
    stop_cluster,
    wait_dead,
    wait_for,
)

from havm.v1 import manager_pb2, manager_pb2_grpc

# Timed: failure detection and response times are asserted, so it runs alone.
pytestmark = [pytest.mark.integration, pytest.mark.timed]

NODES = ["n1", "n2", "n3", "n4"]
# The agents' isolation timeout in this topology: past the detector's window (1 s x 5),
# so that the manager fails the VMs over before the isolated host powers them off.
ISOLATION_TIMEOUT_S = 8

HOST_DEFAULTS = """
version: 1
host_defaults:
  profile: hyperv-2008r2
  cpu: {vendor: GenuineIntel, model: Xeon E5520, features: [sse4_2, popcnt], cores: 4, mhz: 2266}
  memory_mb: MEMORY
  disks: [{name: C, capacity_gb: 100}]
  networks: [{name: External, bound_to: "NIC 1"}]
isolation: {timeout_s: ISOLATION}
""".replace("ISOLATION", str(ISOLATION_TIMEOUT_S))


def topology(nodes: list[str], memory_mb: int = 8192, reserve: int = 1) -> str:
    hosts = "\n".join(f"  - {{name: {name}}}" for name in nodes)
    return (
        HOST_DEFAULTS.replace("MEMORY", str(memory_mb))
        + f"""clusters:
  - name: c1
    profile: hyperv-2008r2
    reserve: {reserve}
    nodes: [{", ".join(nodes)}]
    csvs: [{{name: Volume1, capacity_gb: 500}}]
hosts:
{hosts}
"""
    )


def start(directory: Path, text: str) -> LocalCluster:
    path = directory / "topology.yaml"
    path.write_text(text)
    return start_cluster(directory / "state", "--topology", str(path))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[LocalCluster]:
    local = start(tmp_path_factory.mktemp("ha"), topology(NODES))
    try:
        yield local
    finally:
        stop_cluster(local)


# ---------------------------------------------------------------------------- helpers


def vms(cluster: LocalCluster) -> dict[str, dict]:
    return {vm["name"]: vm for vm in cluster.json("vm", "list")}


def hosts(cluster: LocalCluster) -> dict[str, dict]:
    return {host["name"]: host for host in cluster.json("host", "list")}


def ha_placement_problems(cluster: LocalCluster) -> list[str]:
    copies = active_copies(cluster)
    problems = []
    for vm in cluster.json("vm", "list"):
        if not vm["ha"] or vm["restart_priority"] == "none":
            continue
        running = list(copies.get(vm["id"], {}))
        if len(running) != 1:
            problems.append(f"{vm['name']} is active on {running or 'no host'}")
        elif vm["host"] != running[0] or vm["state"] != "running":
            problems.append(
                f"{vm['name']} runs on {running[0]} but the manager says {vm['state']} on {vm['host']}"
            )
    return problems


def assert_every_ha_vm_runs_once(cluster: LocalCluster, timeout: float = 20) -> None:
    """After the dust settles: every HA VM that restarts automatically runs on exactly one
    agent, and the manager records it there."""
    try:
        wait_for(lambda: not ha_placement_problems(cluster), timeout=timeout, interval=0.3)
    except AssertionError:
        pass
    problems = ha_placement_problems(cluster)
    assert not problems, "; ".join(problems)


def wait_hosts_ok(cluster: LocalCluster, timeout: float = 30) -> None:
    wait_for(
        lambda: all(h["state"] == "ok" for h in hosts(cluster).values()),
        timeout=timeout,
        interval=0.3,
        what=f"every host ok (now {[(n, h['state']) for n, h in hosts(cluster).items()]})",
    )


def create(
    cluster: LocalCluster, name: str, host: str, priority: str = "medium", memory_mb: int = 256
) -> dict:
    return cluster.json(
        "vm",
        "create",
        name,
        "--ha",
        "--memory-mb",
        str(memory_mb),
        "--journal-writes-per-s",
        "10",
        "--host",
        host,
        "--restart-priority",
        priority,
    )


def events(cluster: LocalCluster, last: int = 200) -> list[dict]:
    import json

    return [
        json.loads(line)
        for line in cluster.ok("events", "-o", "json", "--last", str(last)).stdout.splitlines()
    ]


def event_time(event: dict) -> float:
    return datetime.fromisoformat(event["time"].replace("Z", "+00:00")).timestamp()


def restarts(cluster: LocalCluster, names: set[str], since: float = 0.0) -> list[dict]:
    return [
        e
        for e in events(cluster)
        if e["kind"] == "failover"
        and e["vm"] in names
        and e["detail"].startswith("restarting")
        and event_time(e) >= since
    ]


def stopped(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"


def settled(cluster: LocalCluster) -> bool:
    pids = [c["pid"] for c in cluster.context()["components"].values()]
    if not all(pid and alive(pid) and not stopped(pid) for pid in pids):
        return False
    return all(h["state"] == "ok" for h in hosts(cluster).values())


def recover(cluster: LocalCluster) -> None:
    """Undo whatever a test broke: heal, thaw or boot every host, restart the manager and
    the broker if they are down, then wait until every host is ok."""
    if settled(cluster):
        return
    components = cluster.context()["components"]
    if not alive(components["broker"]["pid"]):
        cluster.ok("restart", "broker")
    if not alive(components["manager"]["pid"]):
        cluster.ok("restart", "manager")
    for host in agent_names(cluster):
        cluster.havm("fault", "heal", host)
        pid = cluster.component(f"agent:{host}")["pid"]
        if not pid or not alive(pid):
            cluster.ok("host", "start", host)
            continue
        thawed = cluster.havm("fault", "thaw", host)
        if thawed.code != 0 and "host start" in thawed.stderr:
            cluster.ok("host", "start", host)
    cluster.ok("cluster", "refresh")
    wait_hosts_ok(cluster)


@pytest.fixture
def ha(cluster: LocalCluster) -> Iterator[LocalCluster]:
    """The shared cluster, put back in order after the test. The VMs of earlier tests stay:
    every later fault and check covers them too."""
    try:
        yield cluster
    finally:
        recover(cluster)


def on_host(cluster: LocalCluster, host: str, names: list[str]) -> list[str]:
    """Of these VMs, those the agent of `host` runs."""
    ids = {vms(cluster)[name]["id"]: name for name in names}
    return [
        ids[vm.spec.id]
        for vm in inventory(cluster, host) or []
        if vm.spec.id in ids and vm.state in ACTIVE_STATES
    ]


def failed_over(cluster: LocalCluster, names: list[str], away_from: str, count: int = 1) -> bool:
    current = vms(cluster)
    return all(
        current[n]["state"] == "running"
        and current[n]["host"] != away_from
        and current[n]["failover_count"] == count
        for n in names
    )


# ------------------------------------------------------------------------------ tests


def test_agent_crash_fails_its_vms_over_with_their_journal(ha: LocalCluster) -> None:
    names = [f"crash{i}" for i in range(3)]
    for name in names:
        create(ha, name, "n1")
    ids = {name: vms(ha)[name]["id"] for name in names}
    wait_for(
        lambda: all(ha.guest_status("n1", ids[n]).journal_last_seq > 0 for n in names), what="journal writes"
    )
    before = {n: ha.guest_status("n1", ids[n]).journal_last_seq for n in names}

    ha.ok("fault", "crash", "n1")
    assert_invariant(ha, "after the crash")
    wait_for(
        lambda: failed_over(ha, names, "n1"), timeout=5, interval=0.2, what="the VMs of n1 running elsewhere"
    )
    assert_invariant(ha, "after the failover")
    current = vms(ha)
    for name in names:
        after = ha.guest_status(current[name]["host"], ids[name]).journal_last_seq
        assert after >= before[name], f"{name}: journal went back from {before[name]} to {after}"

    ha.ok("host", "start", "n1")
    wait_for(lambda: hosts(ha)["n1"]["state"] == "ok", timeout=15, interval=0.3, what="n1 ok again")
    assert_invariant(ha, "after n1 came back")
    assert on_host(ha, "n1", names) == [], "the restarted host runs an old copy"
    assert_every_ha_vm_runs_once(ha)


def test_silent_power_off_is_detected_by_missed_heartbeats(ha: LocalCluster) -> None:
    names = ["quiet1", "quiet2"]
    for name in names:
        create(ha, name, "n2")
    before = time.time()
    ha.ok("fault", "power-off", "n2")
    after = time.time()
    assert_invariant(ha, "after the power-off")
    wait_for(
        lambda: failed_over(ha, names, "n2"), timeout=12, interval=0.3, what="the VMs of n2 running elsewhere"
    )
    assert_invariant(ha, "after the failover")
    fencing = [
        e
        for e in events(ha)
        if e["kind"] == "failover" and e["detail"] == "fencing host n2: taking its VMs away"
    ]
    assert fencing, "no fencing event for n2"
    fenced_at = event_time(fencing[-1])
    assert fenced_at - before >= 3.5, f"failover {fenced_at - before:.1f} s after the power-off: too early"
    assert fenced_at - after <= 10, f"failover {fenced_at - after:.1f} s after the power-off: too late"

    ha.ok("host", "start", "n2")
    wait_for(lambda: hosts(ha)["n2"]["state"] == "ok", timeout=15, interval=0.3, what="n2 ok again")
    assert_invariant(ha, "after n2 came back")
    assert on_host(ha, "n2", names) == []
    assert_every_ha_vm_runs_once(ha)


class HeartbeatForger:
    """Publishes heartbeats for a host on the cluster's broker, logged in as `user`:
    unsigned ones with the host's boot id and growing sequence numbers, and a real signed
    heartbeat of the host recorded off the broker before, over and over. Each carries
    `"forger": user`, so a listener tells whose got through."""

    def __init__(self, cluster: LocalCluster, host: str, user: str) -> None:
        address = cluster.component("broker")["address"]
        self._broker, self._port = address.rsplit(":", 1)[0], int(address.rsplit(":", 1)[1])
        self._login = cluster.broker_login(user)
        self._user = user
        self._topic = f"havm/v1/hosts/{host}/heartbeat"
        self._stop = threading.Event()
        self.recorded: dict | None = None
        self.sent = 0
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _record(self) -> None:
        """A real heartbeat of the host, read as `reader` (who may read everything)."""
        async with aiomqtt.Client(
            self._broker, self._port, identifier=f"recorder-{self._user}", **self._reader
        ) as client:
            await client.subscribe(self._topic)
            async with asyncio.timeout(10):
                async for message in client.messages:
                    # amqtt also hands a new subscriber the retained statuses of every host.
                    if str(message.topic) == self._topic:
                        self.recorded = json.loads(message.payload)
                        return

    async def _run(self) -> None:
        await self._record()
        assert self.recorded is not None
        async with aiomqtt.Client(
            self._broker, self._port, identifier=f"forger-{self._user}", **self._login
        ) as client:
            seq = self.recorded["seq"]
            while not self._stop.is_set():
                seq += 1
                forged = {**self.recorded, "seq": seq, "time": time.time(), "forger": self._user}
                forged.pop("mac", None)
                for payload in (forged, {**self.recorded, "forger": self._user}):
                    await client.publish(self._topic, json.dumps(payload))
                    self.sent += 1
                await asyncio.sleep(0.2)

    def start(self, reader: dict[str, str]) -> None:
        self._reader = reader
        self._thread.start()
        wait_for(lambda: self.sent > 0, timeout=10, what="the forger publishing")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


class BrokerListener:
    """Reads a topic as the broker's `reader`, collecting who forged what got through."""

    def __init__(self, cluster: LocalCluster, topic: str) -> None:
        address = cluster.component("broker")["address"]
        self._broker, self._port = address.rsplit(":", 1)[0], int(address.rsplit(":", 1)[1])
        self._login = cluster.broker_login("reader")
        self._topic = topic
        self.forgers: dict[str, int] = {}
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        async with aiomqtt.Client(self._broker, self._port, identifier="listener", **self._login) as client:
            await client.subscribe(self._topic)
            self._ready.set()
            while not self._stop.is_set():
                try:
                    async with asyncio.timeout(0.2):
                        message = await anext(client.messages)
                except TimeoutError:
                    continue
                if str(message.topic) == self._topic:
                    forger = json.loads(message.payload).get("forger")
                    if forger:
                        self.forgers[forger] = self.forgers.get(forger, 0) + 1

    def start(self) -> None:
        self._thread.start()
        assert self._ready.wait(10), "the listener did not subscribe"

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


async def _connect(cluster: LocalCluster, **login: str) -> None:
    address = cluster.component("broker")["address"]
    async with aiomqtt.Client(address.rsplit(":", 1)[0], int(address.rsplit(":", 1)[1]), **login):
        pass


def test_forged_heartbeats_do_not_keep_a_powered_off_host_alive(ha: LocalCluster) -> None:
    """Three forgers try to keep n3 alive while it is powered off: the broker refuses
    the heartbeats of another host's identity (n4) and of the read-only `reader`; the
    one holding n3's own broker password gets them through the broker, and the manager
    refuses those as unsigned or replayed. Without a password, no connection at all."""
    for login in ({}, {"username": "host/n3", "password": "guessed"}):
        with pytest.raises(aiomqtt.MqttError):
            asyncio.run(_connect(ha, **login))
    names = ["forged1", "forged2"]
    for name in names:
        create(ha, name, "n3")
    listener = BrokerListener(ha, "havm/v1/hosts/n3/heartbeat")
    listener.start()
    forgers = [HeartbeatForger(ha, "n3", user) for user in ("host/n4", "reader", "host/n3")]
    for forger in forgers:
        forger.start(ha.broker_login("reader"))
    try:
        ha.ok("fault", "power-off", "n3")
        wait_for(
            lambda: failed_over(ha, names, "n3"),
            timeout=15,
            interval=0.3,
            what="the VMs of n3 running elsewhere",
        )
        assert_invariant(ha, "after the failover while n3's heartbeats were forged")
        assert hosts(ha)["n3"]["state"] == "fenced"
    finally:
        for forger in forgers:
            forger.stop()
        listener.stop()
    assert all(forger.sent > 0 for forger in forgers)
    # What the broker let through: only the holder of n3's own password.
    assert set(listener.forgers) == {"host/n3"}, listener.forgers
    refused = [e for e in events(ha) if e["kind"] == "security" and e["host"] == "n3"]
    assert refused, "no security event for the forged heartbeats"
    assert refused[0]["detail"] in (
        "ignored a heartbeat not signed with the key of host n3",
        "ignored a heartbeat of host n3 older than one already heard (a replay)",
    )
    ha.ok("host", "start", "n3")
    wait_for(lambda: hosts(ha)["n3"]["state"] == "ok", timeout=15, interval=0.3, what="n3 ok again")
    assert_invariant(ha, "after n3 came back")
    assert_every_ha_vm_runs_once(ha)


def kill_manager_at_first_restart(cluster: LocalCluster, host: str, killed: threading.Event) -> None:
    """SIGKILL the manager the moment its event stream (what `havm events -f` prints) shows
    the first failover restart away from `host`: the rest of that failover is cut short."""
    manager = cluster.component("manager")
    try:
        with cluster.channel("manager") as channel:
            stub = manager_pb2_grpc.ManagerServiceStub(channel)
            for response in stub.WatchEvents(manager_pb2.WatchEventsRequest(follow=True), timeout=15):
                event = response.event
                if event.kind == "failover" and event.detail.startswith("restarting") and event.vm:
                    os.kill(manager["pid"], signal.SIGKILL)
                    killed.set()
                    return
    except grpc.RpcError:
        return


def test_manager_killed_in_the_middle_of_a_failover_finishes_after_restart(ha: LocalCluster) -> None:
    names = [f"midway{i}" for i in range(6)]
    for name in names:
        create(ha, name, "n4")
    killed = threading.Event()
    killer = threading.Thread(target=kill_manager_at_first_restart, args=(ha, "n4", killed), daemon=True)
    killer.start()
    time.sleep(0.3)
    ha.ok("fault", "crash", "n4")
    if not killed.wait(timeout=8):
        ha.kill9("manager")
    killer.join(timeout=5)
    wait_dead(ha.component("manager")["pid"])
    assert_invariant(ha, "with the manager dead mid-failover")
    ha.ok("restart", "manager")
    assert_invariant(ha, "after the manager restart")
    wait_for(lambda: failed_over(ha, names, "n4"), timeout=20, interval=0.3, what="the failover to finish")
    assert_invariant(ha, "after the failover finished")
    ha.ok("host", "start", "n4")
    wait_for(lambda: hosts(ha)["n4"]["state"] == "ok", timeout=15, interval=0.3, what="n4 ok again")
    assert on_host(ha, "n4", names) == []
    assert_every_ha_vm_runs_once(ha)

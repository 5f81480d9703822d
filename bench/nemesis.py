"""Fault schedules against real local clusters: the two invariants under a nemesis.

    .venv/bin/python bench/nemesis.py --schedules 200 --steps 10 --seed 1000

Each schedule starts a fresh cluster (`havm up`: four Hyper-V 2008 R2 nodes, mutual
TLS, the broker's users and ACLs) with HA VMs at mixed restart priorities (high,
medium, low, none) and draws `--steps` steps from its own seed (`--seed` + its number,
so one failing schedule is run again alone with `--seed N --schedules 1`):

- crash, power-off, freeze/thaw of a node; `host start` of a node that is down
  (at most one node down at a time: the cluster keeps a reserve of one);
- isolating a node from the heartbeat, management or migration network, or all of
  them, healed a few seconds later;
- crash and restart of the manager, and of the broker;
- live migrations left in flight while the next fault comes;
- forged heartbeats for a node: from an unauthenticated client, and from a client
  holding another host's broker login.

After every step it asks the agents themselves (not the manager) what runs, and fails
if a VM is active on two hosts with a current lease. Then it repairs everything, waits
for every host to be `ok`, and fails unless every HA VM that restarts automatically
runs on exactly one agent, where the manager records it. Exits 1 on the first broken
schedule, printing its seed and what was done; prints a summary line at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt
import grpc

from havm.cli.context import client_identity
from havm.contract.broker_access import host_user
from havm.contract.broker_access import password as broker_password
from havm.contract.heartbeat_auth import read_secret_file
from havm.contract.identity import sync_channel
from havm.scenario.cli_bridge import run_cli
from havm.v1 import agent_pb2, agent_pb2_grpc, common_pb2

HAVM = [sys.executable, "-m", "havm.cli.main"]
NODES = ["n1", "n2", "n3", "n4"]
PRIORITIES = ["high", "medium", "low", "none"]
ACTIVE = {common_pb2.VM_STATE_RUNNING, common_pb2.VM_STATE_PAUSED, common_pb2.VM_STATE_STARTING}
# Commands that start or stop processes run as a user runs them: in a process of their own.
OWN_PROCESS = {"up", "down", "restart", "fault", "host"}
TOPOLOGY = """version: 1
isolation: {timeout_s: 8}
host_defaults:
  profile: hyperv-2008r2
  cpu: {vendor: GenuineIntel, model: Xeon E5520, features: [sse4_2, popcnt], cores: 8, mhz: 2266}
  memory_mb: 8192
  host_reserve_mb: 1024
  disks: [{name: C, capacity_gb: 100}]
  networks: [{name: Public, bound_to: PCI bus 3}]
clusters:
  - name: c1
    profile: hyperv-2008r2
    reserve: 1
    nodes: [n1, n2, n3, n4]
    csvs: [{name: Volume1, capacity_gb: 500}]
hosts:
  - {name: n1}
  - {name: n2}
  - {name: n3}
  - {name: n4}
"""


class Broken(Exception):
    """An invariant broke; the message says which and where."""


@dataclass
class Cluster:
    state_dir: Path

    def havm(self, *args: str, timeout: float = 120) -> tuple[int, str, str]:
        if args[0] not in OWN_PROCESS or args[:2] == ("host", "list"):
            ran = run_cli(["--state-dir", str(self.state_dir), *args])
            return ran.exit_code, ran.stdout, ran.stderr
        done = subprocess.run(
            [*HAVM, "--state-dir", str(self.state_dir), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        return done.returncode, done.stdout, done.stderr

    def ok(self, *args: str) -> str:
        code, stdout, stderr = self.havm(*args)
        if code != 0:
            raise RuntimeError(f"havm {' '.join(args)} exited {code}: {stderr.strip()}")
        return stdout

    def json(self, *args: str) -> list[dict]:
        return json.loads(self.ok(*args, "-o", "json"))

    def context(self) -> dict:
        return json.loads((self.state_dir / "cluster.json").read_text())

    def inventory(self, host: str) -> list[common_pb2.VmRuntime] | None:
        """What the agent itself runs, asked past the fault relay; None when it does not answer."""
        component = self.context()["components"][f"agent:{host}"]
        if not component.get("pid") or not alive(component["pid"]):
            return None
        try:
            with sync_channel(component["address"], client_identity(None, self.state_dir), host) as channel:
                reply = agent_pb2_grpc.AgentServiceStub(channel).GetInventory(
                    agent_pb2.AgentServiceGetInventoryRequest(), timeout=1.0
                )
        except grpc.RpcError:
            return None
        return list(reply.vms)

    def broker(self) -> tuple[str, int]:
        host, _, port = self.context()["components"]["broker"]["address"].rpartition(":")
        return host, int(port)

    def broker_login(self, user: str) -> dict[str, str]:
        secret = read_secret_file(self.state_dir / "secrets" / "heartbeat-secret")
        return {"username": user, "password": broker_password(secret, user) or ""}


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def frozen(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"
    except OSError:
        return False


def active_copies(cluster: Cluster) -> dict[str, dict[str, int]]:
    """VM id -> {host: lease generation} of every agent that answers and runs a copy."""
    copies: dict[str, dict[str, int]] = {}
    for host in NODES:
        for vm in cluster.inventory(host) or []:
            if vm.state in ACTIVE:
                copies.setdefault(vm.spec.id, {})[host] = vm.lease_generation
    return copies


def split_brains(copies: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """Copies of one VM holding the same lease, or two holding the newest: a VM running
    twice. (An older lease's copy is already fenced: storage refuses its writes.)"""
    return {
        vm: held
        for vm, held in copies.items()
        if len(held) != len(set(held.values())) or list(held.values()).count(max(held.values())) > 1
    }


class Forger:
    """Publishes heartbeats for `victim` for as long as it runs: as an unauthenticated
    client (refused at connect) or with another host's login (refused by the ACL)."""

    def __init__(self, cluster: Cluster, victim: str, login: dict[str, str]) -> None:
        self._broker = cluster.broker()
        self._victim = victim
        self._login = login
        self._stop = threading.Event()
        self.refused = 0
        self.sent = 0
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()

    async def _run(self) -> None:
        topic = f"havm/v1/hosts/{self._victim}/heartbeat"
        while not self._stop.is_set():
            try:
                async with aiomqtt.Client(
                    *self._broker, identifier=f"forger-{os.getpid()}", **self._login
                ) as client:
                    while not self._stop.is_set():
                        beat = {
                            "host": self._victim,
                            "seq": self.sent,
                            "time": time.time(),
                            "boot_id": "forged",
                        }
                        await client.publish(topic, json.dumps(beat))
                        self.sent += 1
                        await asyncio.sleep(0.2)
            except aiomqtt.MqttError:
                self.refused += 1
                await asyncio.sleep(0.3)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@dataclass
class Schedule:
    cluster: Cluster
    rng: random.Random
    down: str | None = None
    log: list[str] = field(default_factory=list)
    forgers: list[Forger] = field(default_factory=list)

    def run(self, *args: str) -> None:
        self.log.append(" ".join(args))
        code, _, stderr = self.cluster.havm(*args)
        if code != 0:
            # A fault on a component another fault already took down, a migration the
            # manager refuses now: recorded, not a failure of the invariants.
            self.log.append(f"  (exit {code}: {stderr.strip()[:160]})")

    def pause(self, low: float, high: float) -> None:
        seconds = round(self.rng.uniform(low, high), 1)
        self.log.append(f"wait {seconds} s")
        time.sleep(seconds)

    def node(self) -> str:
        return self.rng.choice([n for n in NODES if n != self.down])

    def step(self) -> None:
        processes: list[Callable[[], None]] = [self.crash_manager, self.crash_broker]
        others: list[Callable[[], None]] = [self.migrate, self.forge, self.freeze, self.isolate, self.isolate]
        if self.down:
            choices = [self.start_node, self.start_node, *processes, *others]
        else:
            choices = [self.crash, self.power_off, *processes, *others]
        self.rng.choice(choices)()

    def crash(self) -> None:
        self.down = self.node()
        self.run("fault", "crash", self.down)
        self.pause(0.5, 3)

    def power_off(self) -> None:
        self.down = self.node()
        self.run("fault", "power-off", self.down)
        self.pause(1, 6)

    def start_node(self) -> None:
        assert self.down
        self.run("host", "start", self.down)
        self.down = None
        self.pause(0.5, 2)

    def freeze(self) -> None:
        node = self.node()
        self.run("fault", "freeze", node)
        self.pause(0.5, 3)
        self.run("fault", "thaw", node)

    def isolate(self) -> None:
        node = self.node()
        network = self.rng.choice(["heartbeat", "management", "migration", "all"])
        self.run("fault", "isolate", node, "--from", network)
        self.pause(1, 6)
        self.run("fault", "heal", node)

    def crash_manager(self) -> None:
        self.run("fault", "crash-manager")
        self.pause(0, 1.5)
        self.run("restart", "manager")

    def crash_broker(self) -> None:
        self.run("fault", "crash-broker")
        self.pause(0, 1.5)
        self.run("restart", "broker")

    def migrate(self) -> None:
        """A live migration left running while the next step's fault comes."""
        running = [
            vm
            for vm in self.cluster.json("vm", "list")
            if vm["state"] == "running" and vm["host"] not in (None, self.down)
        ]
        if not running:
            self.log.append("no running VM to migrate")
            return
        vm = self.rng.choice(running)
        target = self.rng.choice([n for n in NODES if n not in (vm["host"], self.down)])
        self.run("vm", "migrate", vm["name"], "--to", target, "--detach")
        self.pause(0, 0.5)

    def forge(self) -> None:
        victim = self.node()
        stolen = self.rng.choice([n for n in NODES if n != victim])
        logins = [{}, self.cluster.broker_login(host_user(stolen))]
        self.log.append(f"forge heartbeats of {victim}: unauthenticated, and as {host_user(stolen)}")
        self.forgers += [Forger(self.cluster, victim, login) for login in logins]

    def stop_forgers(self) -> None:
        for forger in self.forgers:
            forger.stop()
        self.forgers = []

    def check(self, where: str) -> None:
        doubles = split_brains(active_copies(self.cluster))
        if doubles:
            raise Broken(f"VMs active on two hosts {where} (host: lease generation): {doubles}")

    def repair(self) -> None:
        """Heal, thaw or boot every host; restart the manager and the broker if they are down."""
        self.stop_forgers()
        components = self.cluster.context()["components"]
        for name in ("broker", "manager"):
            if not alive(components[name]["pid"]):
                self.run("restart", name)
        for host in NODES:
            self.run("fault", "heal", host)
            component = self.cluster.context()["components"][f"agent:{host}"]
            pid = component["pid"]
            if not pid or not alive(pid) or component.get("fault") == "powered_off":
                # A powered-off host boots again; a crashed one is started.
                self.run("host", "start", host)
            elif frozen(pid):
                self.run("fault", "thaw", host)
        self.down = None
        self.run("cluster", "refresh")

    def settled(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        problems: list[str] = ["not looked yet"]
        while time.monotonic() < deadline:
            problems = self.placement_problems()
            if not problems:
                return
            time.sleep(0.5)
        raise Broken(f"not settled {timeout:.0f} s after the repair: " + "; ".join(problems))

    def placement_problems(self) -> list[str]:
        hosts = {h["name"]: h["state"] for h in self.cluster.json("host", "list")}
        problems = [f"host {name} is {state}" for name, state in hosts.items() if state != "ok"]
        copies = active_copies(self.cluster)
        for vm in self.cluster.json("vm", "list"):
            running = sorted(copies.get(vm["id"], {}))
            if vm["restart_priority"] == "none":
                if len(running) > 1:
                    problems.append(f"{vm['name']} (priority none) is active on {running}")
                continue
            if running != [vm["host"]] or vm["state"] != "running":
                problems.append(
                    f"{vm['name']} is {vm['state']} on {vm['host']}, active on {running or 'no host'}"
                )
        return problems


def start_cluster(directory: Path) -> Cluster:
    topology = directory / "topology.yaml"
    topology.write_text(TOPOLOGY)
    cluster = Cluster(directory / "state")
    cluster.ok("up", "--detach", "--topology", str(topology))
    for index, node in enumerate(NODES):
        for slot in range(2):
            priority = PRIORITIES[(index * 2 + slot) % len(PRIORITIES)]
            shape = ("--ha", "--memory-mb", "256", "--journal-writes-per-s", "10", "--max-failovers", "1000")
            cluster.ok(
                "vm", "create", f"vm{index}{slot}", *shape, "--host", node, "--restart-priority", priority
            )
    return cluster


def run_schedule(seed: int, steps: int) -> tuple[bool, list[str], float]:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="havm-nemesis-") as tmp:
        cluster = start_cluster(Path(tmp))
        schedule = Schedule(cluster, random.Random(seed))
        try:
            time.sleep(2.0)  # a few heartbeats: the manager judges hosts once it heard them
            for number in range(1, steps + 1):
                schedule.log.append(f"-- step {number}")
                schedule.step()
                schedule.check(f"after step {number}")
            schedule.log.append("-- repair everything")
            schedule.repair()
            schedule.check("after the repair")
            schedule.settled()
            schedule.check("once settled")
            return True, schedule.log, time.monotonic() - started
        except Broken as error:
            schedule.log.append(f"BROKEN: {error}")
            return False, schedule.log, time.monotonic() - started
        finally:
            schedule.stop_forgers()
            cluster.havm("down")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedules", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--verbose", action="store_true", help="print every schedule's steps")
    args = parser.parse_args()
    if args.schedules < 1 or args.steps < 1:
        parser.error("--schedules and --steps must be at least 1")
    began = time.monotonic()
    for number in range(args.schedules):
        seed = args.seed + number
        passed, log, seconds = run_schedule(seed, args.steps)
        faults = sum(
            1 for line in log if line.startswith(("fault", "restart", "host start", "vm migrate", "forge"))
        )
        print(
            f"schedule seed {seed}: {'ok' if passed else 'BROKEN'} ({faults} actions, {seconds:.0f} s)",
            flush=True,
        )
        if not passed or args.verbose:
            print("\n".join(f"  {line}" for line in log))
        if not passed:
            return 1
    seeds = f"{args.seed}..{args.seed + args.schedules - 1}"
    print(
        f"nemesis: {args.schedules} schedules of {args.steps} steps (seeds {seeds}) "
        f"kept both invariants in {time.monotonic() - began:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

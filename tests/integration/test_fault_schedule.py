"""A seeded, bounded random schedule of faults on a real 4-node cluster: whatever order
crashes, power losses, freezes, partitions and manager or broker crashes come in, no VM
ever runs on two hosts, and once everything is repaired every HA VM runs exactly once.

The same rules run many longer schedules on virtual time
(tests/scenario_engine/test_fault_schedules.py); this one keeps real processes, real
sockets and real timers honest with a shorter one."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cluster_harness import LocalCluster, stop_cluster
from test_ha import assert_every_ha_vm_runs_once, assert_invariant, create, recover, start, topology

pytestmark = pytest.mark.integration

SEED = 20261125
STEPS = 6
NODES = ["n1", "n2", "n3", "n4"]
VMS_PER_NODE = 2
PRIORITIES = ["high", "medium", "low"]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    local = start(tmp_path, topology(NODES))
    try:
        for i, node in enumerate(NODES):
            for j in range(VMS_PER_NODE):
                create(local, f"vm{i}{j}", node, priority=PRIORITIES[(i + j) % len(PRIORITIES)])
        yield local
    finally:
        stop_cluster(local)


class Schedule:
    """Draws the next fault from what the cluster's current damage allows: at most one
    node down at a time, and a down node is booted again before another node is hurt."""

    def __init__(self, cluster: LocalCluster, rng: random.Random) -> None:
        self.cluster = cluster
        self.rng = rng
        self.down: str | None = None
        self.log: list[str] = []

    def run(self, *args: str) -> None:
        self.log.append(" ".join(args))
        self.cluster.ok(*args)

    def pause(self, low: float, high: float) -> None:
        seconds = round(self.rng.uniform(low, high), 1)
        self.log.append(f"wait {seconds} s")
        time.sleep(seconds)

    def choices(self) -> list[Callable[[], None]]:
        processes = [self.crash_manager, self.crash_broker]
        if self.down:
            return [self.start_node, self.start_node, *processes]
        return [self.crash, self.power_off, self.freeze, self.isolate, self.isolate, *processes]

    def step(self) -> None:
        self.rng.choice(self.choices())()

    def node(self) -> str:
        return self.rng.choice(NODES)

    def crash(self) -> None:
        self.down = self.node()
        self.run("fault", "crash", self.down)
        self.pause(0.5, 3)

    def power_off(self) -> None:
        self.down = self.node()
        self.run("fault", "power-off", self.down)
        self.pause(1, 7)

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
        self.run("fault", "isolate", node, "--from", self.rng.choice(["heartbeat", "management", "all"]))
        self.pause(1, 7)
        self.run("fault", "heal", node)

    def crash_manager(self) -> None:
        self.run("fault", "crash-manager")
        self.pause(0, 1.5)
        self.run("restart", "manager")

    def crash_broker(self) -> None:
        self.run("fault", "crash-broker")
        self.pause(0, 1.5)
        self.run("restart", "broker")


def test_a_random_fault_schedule_never_runs_a_vm_twice(cluster: LocalCluster) -> None:
    schedule = Schedule(cluster, random.Random(SEED))
    try:
        for number in range(1, STEPS + 1):
            schedule.log.append(f"-- step {number}")
            schedule.step()
            assert_invariant(cluster, f"after step {number}")
        schedule.log.append("-- repair everything")
        recover(cluster)
        assert_invariant(cluster, "after the repair")
        assert_every_ha_vm_runs_once(cluster, timeout=30)
    except AssertionError as error:
        raise AssertionError(
            f"fault schedule with seed {SEED} failed: {error}\n" + "\n".join(schedule.log)
        ) from error

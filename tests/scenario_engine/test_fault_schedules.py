"""Seeded random fault schedules on virtual time: many more orders of crashes, power
losses, freezes, partitions and manager or broker crashes than real processes could run
in the suite's budget. Each schedule is written as a scenario folder and run by the
scenario runner, which checks "a VM never runs on two hosts under one lease" all along;
after everything is repaired, every highly available VM must run again.

The same rules drive bench/nemesis.py (and its small run, tests/integration/test_nemesis.py)
on real processes."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from havm.scenario.testing import run_scenario

NODES = ["n1", "n2", "n3", "n4"]
VMS_PER_NODE = 2
PRIORITIES = ["high", "medium", "low"]
STEPS = 25
SEEDS = [20261125, 1, 2, 3, 4, 5]

TOPOLOGY = f"""\
version: 1
host_defaults:
  profile: hyperv-2008r2
  cpu: {{vendor: GenuineIntel, model: Xeon E5520, features: [sse4_2, popcnt], cores: 4, mhz: 2266}}
  memory_mb: 8192
  disks: [{{name: C, capacity_gb: 100}}]
  networks: [{{name: External, bound_to: "NIC 1"}}]
isolation: {{timeout_s: 8}}
clusters:
  - name: c1
    profile: hyperv-2008r2
    reserve: 1
    nodes: [{", ".join(NODES)}]
    csvs: [{{name: Volume1, capacity_gb: 500}}]
hosts:
{chr(10).join(f"  - {{name: {node}}}" for node in NODES)}
"""


class Schedule:
    """Draws the next fault from what the cluster's current damage allows: at most one
    node down at a time, and a down node is booted again before another node is hurt."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.down: str | None = None
        self.lines: list[str] = []

    def pause(self, low: float, high: float) -> None:
        seconds = round(self.rng.uniform(low, high), 1)
        if seconds > 0:
            self.lines.append(f"advance {seconds}s")

    def step(self) -> None:
        processes = [self.crash_manager, self.crash_broker]
        if self.down:
            choices = [self.start_node, self.start_node, *processes]
        else:
            choices = [self.crash, self.power_off, self.freeze, self.isolate, self.isolate, *processes]
        self.rng.choice(choices)()

    def node(self) -> str:
        return self.rng.choice(NODES)

    def crash(self) -> None:
        self.down = self.node()
        self.lines.append(f"fault crash {self.down}")
        self.pause(0.5, 3)

    def power_off(self) -> None:
        self.down = self.node()
        self.lines.append(f"fault power-off {self.down}")
        self.pause(1, 7)

    def start_node(self) -> None:
        self.lines.append(f"host start {self.down}")
        self.down = None
        self.pause(0.5, 2)

    def freeze(self) -> None:
        node = self.node()
        self.lines.append(f"fault freeze {node}")
        self.pause(0.5, 3)
        self.lines.append(f"fault thaw {node}")

    def isolate(self) -> None:
        node = self.node()
        path = self.rng.choice(["heartbeat", "management", "all"])
        self.lines.append(f"fault isolate {node} --from {path}")
        self.pause(1, 7)
        self.lines.append(f"fault heal {node}")

    def crash_manager(self) -> None:
        self.lines.append("fault crash-manager")
        self.pause(0, 1.5)
        self.lines.append("restart manager")

    def crash_broker(self) -> None:
        self.lines.append("fault crash-broker")
        self.pause(0, 1.5)
        self.lines.append("restart broker")


def schedule_commands(seed: int) -> str:
    rng = random.Random(seed)
    schedule = Schedule(rng)
    lines = [f"# fault schedule, seed {seed}"]
    vms = []
    for i, node in enumerate(NODES):
        for j in range(VMS_PER_NODE):
            name = f"vm{i}{j}"
            vms.append(name)
            # A threshold no schedule reaches: every VM must come back, none is left failed.
            lines.append(
                f"vm create {name} --ha --memory-mb 256 --host {node} "
                f"--restart-priority {PRIORITIES[(i + j) % len(PRIORITIES)]} --max-failovers 1000"
            )
    lines.append("advance 2s")
    for _ in range(STEPS):
        schedule.step()
    lines.extend(schedule.lines)
    # Repair everything: a node still down boots again; the manager looks at every host.
    if schedule.down:
        lines.append(f"host start {schedule.down}")
    lines += ["advance 20s", "cluster refresh", "advance 30s"]
    lines += [f"expect host {node} ok" for node in NODES]
    lines += [f"expect vm {name} running" for name in vms]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("seed", SEEDS)
def test_a_random_fault_schedule_never_runs_a_vm_twice_and_loses_no_ha_vm(seed: int, tmp_path: Path) -> None:
    folder = tmp_path / f"fault-schedule-{seed}"
    folder.mkdir()
    (folder / "topology.yaml").write_text(TOPOLOGY)
    (folder / "commands").write_text(schedule_commands(seed))
    result = run_scenario(folder)
    # No expected.log: the schedule asserts outcomes and invariants, not the event text.
    failed = [o for o in result.outcomes if not o.passed]
    assert result.error is None and not failed and not result.violations, (
        "\n".join(result.report()) + "\n--- commands\n" + (folder / "commands").read_text()
    )
    assert result.virtual_seconds > STEPS  # the schedule really ran its course

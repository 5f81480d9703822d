"""A small run of the fault-schedule suite (bench/nemesis.py) on real clusters: three
seeded schedules of crashes, power losses, freezes, partitions of each network,
manager and broker crashes, live migrations in flight and forged heartbeats. After
every step no VM runs twice (asked of the agents), and once everything is repaired
every HA VM that restarts automatically runs exactly once. A phase of its own
(scripts/test): each schedule starts its own cluster.

The same rules run many longer schedules on virtual time
(tests/scenario_engine/test_fault_schedules.py); `bench/nemesis.py --schedules 200`
runs many more on real processes.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.robustness]

_spec = importlib.util.spec_from_file_location("nemesis", Path(__file__).parents[2] / "bench" / "nemesis.py")
assert _spec is not None and _spec.loader is not None
nemesis = importlib.util.module_from_spec(_spec)
# Registered first: its dataclasses look their module up while it loads.
sys.modules["nemesis"] = nemesis
_spec.loader.exec_module(nemesis)

SEEDS = [20261125, 20261126, 20261127]
STEPS = 8


@pytest.mark.timeout(300)
@pytest.mark.parametrize("seed", SEEDS)
def test_a_random_fault_schedule_keeps_both_invariants(seed: int) -> None:
    passed, log, _ = nemesis.run_schedule(seed, STEPS)
    assert passed, f"fault schedule with seed {seed} broke an invariant:\n" + "\n".join(log)

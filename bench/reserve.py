"""Benchmark: the exact cluster-reserve check, and how often VMM's slot method is wrong.

    .venv/bin/python bench/reserve.py [--runs 7] [--random 1000] [--seed 1]

Part 1 times `reserve_report` (the exact N-k check that runs failover's restart planner
on the failure sets the bound cannot prove survivable) on one core:

- 16 nodes / 1,000 HA VMs (the Hyper-V 2008 R2 cluster limit) with reserve 1 and 2;
- 64 nodes / 8,000 HA VMs of mixed sizes with reserve 2. Target: median under 1 s.

Each is measured on clusters whose VMs fill 90% to 102% of what the nodes left after
`reserve` failures hold (near 100% the verdict can go either way, and the bound proves
the fewest sets), with `--runs` repetitions; it prints the verdict, the median and
maximum time, and on how many of the failure sets the planner had to run.

Part 2 draws `--random` clusters (3 to 12 nodes, reserve 1 or 2, HA VMs of mixed
sizes) and judges each both ways: exactly, and by VMM 2008 R2's slot method (a slot is
the largest HA VM's memory; the cluster survives when the healthy nodes left after
losing the `reserve` nodes with the most slots have a slot for every HA VM). It
reports how many the slot method calls overcommitted that the exact check proves
survivable (and the converse, which would be a bug of the slot method's optimism).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from manager.core.capacity import is_protected, reserve_report  # noqa: E402
from manager.core.model import StorageKind, StorageLocation, VmRecord  # noqa: E402
from manager.core.placement import HostCapacity, PlacementSnapshot, StorageRoom  # noqa: E402
from manager.core.states import ClusterState, HostState, VmState  # noqa: E402

CSV = StorageLocation(StorageKind.CSV, "Volume1")
MIXED_SIZES = (512, 1024, 2048, 4096, 8192)


def build(
    nodes: int, vm_count: int, node_mb: int, sizes: tuple[int, ...], rng: random.Random
) -> tuple[PlacementSnapshot, list[VmRecord]]:
    """A cluster whose VMs are spread over the nodes as placement would (emptiest first)."""
    free = {f"node{i + 1:02d}": node_mb for i in range(nodes)}
    vms: list[VmRecord] = []
    for i in range(vm_count):
        size = rng.choice(sizes)
        host = max(free, key=lambda h: (free[h], h))
        if free[host] < size:
            break
        free[host] -= size
        vms.append(
            VmRecord(
                id=f"vm{i}",
                name=f"vm{i:05d}",
                host=host,
                state=VmState.RUNNING,
                highly_available=True,
                memory_mb=size,
                cpus=1,
                disk_gb=20,
                storage=CSV,
            )
        )
    hosts = tuple(
        HostCapacity(
            name=name,
            cluster="c",
            state=HostState.OK,
            usable_memory_mb=node_mb,
            memory_free_mb=left,
            cores=64,
            running_vcpus=0,
            storage=(StorageRoom("Volume1", StorageKind.CSV, 1 << 30),),
            networks=("External",),
        )
        for name, left in free.items()
    )
    return PlacementSnapshot(hosts), vms


def node_memory_for(nodes: int, reserve: int, total_mb: int, fill: float) -> int:
    """Node size at which the VMs use `fill` of what the nodes left after `reserve`
    failures hold."""
    return int(total_mb / ((nodes - reserve) * fill))


def timed(snapshot: PlacementSnapshot, vms: list[VmRecord], reserve: int, runs: int) -> tuple:
    times = []
    report = None
    for _ in range(runs):
        start = time.perf_counter()
        report = reserve_report("c", reserve, snapshot, vms)
        times.append(time.perf_counter() - start)
    assert report is not None
    return statistics.median(times), max(times), report


def part_one(runs: int, seed: int) -> None:
    print("exact reserve check (one core)")
    print(f"{'case':44} {'verdict':14} {'median':>9} {'max':>9} {'planned':>13}")
    cases = [
        ("16 nodes / 1,000 VMs of 2 GiB, R=1", 16, 1000, (2048,), 1),
        ("16 nodes / 1,000 VMs of 2 GiB, R=2", 16, 1000, (2048,), 2),
        ("16 nodes / 1,000 VMs mixed, R=2", 16, 1000, MIXED_SIZES, 2),
        ("64 nodes / 8,000 VMs mixed, R=2", 64, 8000, MIXED_SIZES, 2),
    ]
    for label, nodes, count, sizes, reserve in cases:
        for fill in (0.90, 0.95, 0.97, 0.98, 1.0, 1.02):
            rng = random.Random(seed)
            total = sum(rng.choice(sizes) for _ in range(count))
            node_mb = node_memory_for(nodes, reserve, total, fill)
            snapshot, vms = build(nodes, count, node_mb, sizes, random.Random(seed))
            median, worst, report = timed(snapshot, vms, reserve, runs)
            planned = f"{report.planned}/{report.failure_sets}"
            print(
                f"{label + f' ({fill:.0%})':44} {report.state.value:14} "
                f"{median * 1000:8.1f}ms {worst * 1000:8.1f}ms {planned:>13}"
            )


def slot_method_ok(snapshot: PlacementSnapshot, vms: list[VmRecord], reserve: int) -> bool:
    """VMM 2008 R2's slot check: every healthy node holds usable // slot slots."""
    protected = [v for v in vms if is_protected(v)]
    if not protected:
        return True
    slot = max(v.memory_mb for v in protected)
    slots = sorted(h.usable_memory_mb // slot for h in snapshot.hosts if h.state is HostState.OK)
    left = slots[: max(0, len(slots) - reserve)]
    return sum(left) >= len(protected)


def part_two(count: int, seed: int) -> None:
    rng = random.Random(seed)
    exact_ok = slot_over_exact_ok = slot_ok_exact_over = 0
    started = time.perf_counter()
    for _ in range(count):
        nodes = rng.randint(3, 12)
        reserve = rng.choice((1, 2)) if nodes > 3 else 1
        sizes = tuple(rng.sample(MIXED_SIZES, rng.randint(2, 5)))
        node_mb = rng.choice((32768, 49152, 65536))
        mean = statistics.mean(sizes)
        fill = rng.uniform(0.6, 1.1)
        vm_count = int((nodes - reserve) * node_mb * fill / mean)
        snapshot, vms = build(nodes, vm_count, node_mb, sizes, rng)
        exact = reserve_report("c", reserve, snapshot, vms).state is ClusterState.OK
        slots = slot_method_ok(snapshot, vms, reserve)
        exact_ok += exact
        slot_over_exact_ok += exact and not slots
        slot_ok_exact_over += slots and not exact
    elapsed = time.perf_counter() - started
    print()
    print(f"{count} random clusters (3-12 nodes, reserve 1-2, mixed VM sizes), judged in {elapsed:.1f} s")
    print(f"  exact check: {exact_ok} ok, {count - exact_ok} overcommitted")
    print(f"  slot method calls overcommitted what the exact check proves survivable: {slot_over_exact_ok}")
    print(f"  slot method calls ok what the exact check finds overcommitted: {slot_ok_exact_over}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--random", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    part_one(args.runs, args.seed)
    part_two(args.random, args.seed)


if __name__ == "__main__":
    main()

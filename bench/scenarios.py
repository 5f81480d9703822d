"""Benchmark: how fast scenarios run on virtual time, and how they compare with the same
folders on real processes.

    .venv/bin/python bench/scenarios.py [--runs 3] [--real NAME ...] [FOLDER]

Runs every scenario of FOLDER (default tests/scenarios) `--runs` times in this process,
on virtual time, and prints per scenario the scenario time it covers and the median
wall time, then the totals and the speed-up (scenario seconds per wall second). With
`--real`, the named scenarios also run once each on real processes (`havm up`), for
the same comparison on real time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from havm.scenario.runner import run_folder
from havm.scenario.steps import load_folder

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folder", nargs="?", type=Path, default=ROOT / "tests" / "scenarios")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--real", nargs="*", default=[], metavar="NAME")
    args = parser.parse_args()
    folders = sorted(p for p in args.folder.iterdir() if (p / "commands").is_file())
    if not folders:
        print(f"no scenarios in {args.folder}", file=sys.stderr)
        return 1
    rows = []
    started = time.perf_counter()
    for path in folders:
        folder = load_folder(path)
        walls, virtual, passed = [], 0.0, True
        for _ in range(args.runs):
            result = run_folder(folder)
            walls.append(result.wall_seconds)
            virtual, passed = result.virtual_seconds, passed and result.passed
        rows.append((path.name, virtual, statistics.median(walls), passed))
    total_wall = time.perf_counter() - started
    width = max(len(name) for name, *_ in rows)
    print(f"{'scenario':<{width}}  scenario s  wall s (median of {args.runs})")
    for name, virtual, wall, passed in rows:
        print(f"{name:<{width}}  {virtual:10.1f}  {wall:6.3f}{'' if passed else '  FAILED'}")
    walls = sorted(wall for _, _, wall, _ in rows)
    scenario_s = sum(v for _, v, _, _ in rows)
    print(
        f"\n{len(rows)} scenarios, {scenario_s:.0f} s of scenario time; one run of all: "
        f"{sum(walls):.1f} s wall (median {statistics.median(walls):.2f} s, "
        f"p90 {walls[int(0.9 * (len(walls) - 1))]:.2f} s, max {walls[-1]:.2f} s); "
        f"{scenario_s / sum(walls):.0f} scenario seconds per wall second; "
        f"all {args.runs} runs: {total_wall:.1f} s"
    )
    for name in args.real:
        real = run_folder(load_folder(args.folder / name), real=True)
        print(
            f"--real {name}: {real.virtual_seconds:.1f} s of scenario in {real.wall_seconds:.1f} s wall "
            f"({'passed' if real.passed else 'FAILED'})"
        )
    return 0 if all(passed for *_, passed in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: how long `havm up --detach` takes until every component is healthy, and
what one idle agent process costs in memory.

    .venv/bin/python bench/startup.py [--runs 5] [--topology FILE]

Each run starts the cluster in a fresh state directory, waits for `havm up --detach` to
return (it returns once the broker accepts connections, every agent and the manager
answer gRPC health checks SERVING, and the first cluster refresh has completed), lets
the cluster idle for a few seconds, reads the resident set size of every process from
/proc, and stops it with `havm down`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HAVM = [sys.executable, "-m", "havm.cli.main"]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def one_run(topology: str | None, idle_s: float) -> tuple[float, dict[str, float]]:
    with tempfile.TemporaryDirectory(prefix="havm-bench-") as tmp:
        state = ["--state-dir", tmp]
        extra = ["--topology", topology] if topology else []
        started = time.perf_counter()
        up = subprocess.run([*HAVM, *state, "up", "--detach", *extra], capture_output=True, text=True)
        elapsed = time.perf_counter() - started
        try:
            if up.returncode != 0:
                raise SystemExit(f"havm up failed: {up.stderr}")
            time.sleep(idle_s)
            components = json.loads((Path(tmp) / "cluster.json").read_text())["components"]
            rss = {name: rss_mb(c["pid"]) for name, c in components.items()}
        finally:
            subprocess.run([*HAVM, *state, "down"], capture_output=True, text=True)
        return elapsed, rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--topology", default=None)
    parser.add_argument("--idle", type=float, default=3.0, help="seconds to idle before reading RSS")
    args = parser.parse_args()
    times, agent_rss, manager_rss, broker_rss = [], [], [], []
    for i in range(args.runs):
        elapsed, rss = one_run(args.topology, args.idle)
        times.append(elapsed)
        agent_rss += [v for k, v in rss.items() if k.startswith("agent:")]
        manager_rss.append(rss["manager"])
        broker_rss.append(rss["broker"])
        print(f"run {i + 1}: up --detach to healthy {elapsed:.2f} s")
    print(
        f"up --detach to healthy: median {statistics.median(times):.2f} s, "
        f"min {min(times):.2f} s, max {max(times):.2f} s over {len(times)} runs"
    )
    print(f"idle agent RSS: median {statistics.median(agent_rss):.1f} MiB, max {max(agent_rss):.1f} MiB")
    print(
        f"idle manager RSS: median {statistics.median(manager_rss):.1f} MiB; "
        f"broker RSS: median {statistics.median(broker_rss):.1f} MiB"
    )


if __name__ == "__main__":
    main()

"""Benchmark: live migration between two agents on loopback.

    .venv/bin/python bench/migration.py [--runs 5] [--concurrent 8]

Starts a local cluster of two Hyper-V 2008 R2 nodes (`havm up --detach`) and, through
the manager's gRPC API:

- live-migrates a 1 GiB VM whose guest dirties 50 MiB/s from one node to the other and
  back, `--runs` times, and
- requests `--concurrent` live migrations of 256 MiB VMs at once (half each way), `--runs`
  times. The manager runs at most `--limit` live migrations per host at a time (the
  product's default, 2, unless given) and queues the rest; `--limit 8` runs all eight at
  once.

For each migration it reads the figures the agents measured (bytes sent, pre-copy passes,
total time, blackout from pause to resume). The transfer rate is bytes over the total time
of the migration; for the concurrent batch also all bytes over the batch's wall time
(queueing included). Prints
median and p99. Targets: transfer rate >= 400 MiB/s; median blackout <= 50 ms.

`--security both` (the default) runs everything twice in one run, on a cluster with
mutual TLS (the default of `havm up`) and on one started `--insecure`, and prints what
TLS costs the 1 GiB migration (rate and blackout medians side by side).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from havm.cli.context import client_identity
from havm.contract.identity import MANAGER_NAME, sync_channel
from havm.v1 import common_pb2, manager_pb2, manager_pb2_grpc

HAVM = [sys.executable, "-m", "havm.cli.main"]
MIB = 1024 * 1024
TOPOLOGY = """
version: 1
host_defaults:
  profile: hyperv-2008r2
  cpu: {vendor: GenuineIntel, model: Xeon X5570, features: [sse4_2, popcnt], cores: 16, mhz: 2933}
  memory_mb: 65536
  host_reserve_mb: 2048
  disks: [{name: C, capacity_gb: 500}]
  networks: [{name: External, bound_to: "NIC 1"}]
migration:
  max_live_migrations_per_host: LIMIT
clusters:
  - name: cluster1
    profile: hyperv-2008r2
    reserve: 0
    nodes: [node1, node2]
    csvs: [{name: Volume1, capacity_gb: 8192}]
hosts:
  - {name: node1}
  - {name: node2}
"""


def havm(state: Path, *args: str) -> str:
    result = subprocess.run([*HAVM, "--state-dir", str(state), *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"havm {' '.join(args)} failed: {result.stderr}")
    return result.stdout


def run_job(stub: manager_pb2_grpc.ManagerServiceStub, job: manager_pb2.Job, what: str) -> None:
    for update in stub.WatchJob(manager_pb2.WatchJobRequest(id=job.id), timeout=600):
        job = update.job
    if job.state != manager_pb2.JOB_STATE_COMPLETED:
        raise SystemExit(f"{what} failed: {job.error}")


def create(
    stub: manager_pb2_grpc.ManagerServiceStub, name: str, host: str, memory_mb: int, dirty: float
) -> None:
    request = manager_pb2.CreateVmRequest(
        name=name,
        memory_mb=memory_mb,
        disk_gb=1,
        highly_available=True,
        host=host,
        workload=common_pb2.GuestWorkload(dirty_rate_mb_per_s=dirty, journal_writes_per_s=20),
    )
    run_job(stub, stub.CreateVm(request, timeout=60).job, f"creating {name}")


def migrate(stub: manager_pb2_grpc.ManagerServiceStub, name: str, host: str) -> manager_pb2.Migration:
    reply = stub.MigrateVm(manager_pb2.MigrateVmRequest(name=name, host=host), timeout=60)
    for update in stub.WatchJob(manager_pb2.WatchJobRequest(id=reply.job.id), timeout=600):
        del update
    migration = stub.GetMigration(
        manager_pb2.GetMigrationRequest(id=reply.migration.id), timeout=10
    ).migration
    if (
        migration.state != manager_pb2.MIGRATION_STATE_COMPLETED
        or migration.kind != manager_pb2.MIGRATION_KIND_LIVE
    ):
        raise SystemExit(f"migrating {name} to {host} did not complete live: {migration}")
    return migration


def rate(migration: manager_pb2.Migration) -> float:
    return migration.bytes / MIB / (migration.duration_ms / 1000)


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def report(name: str, values: list[float], unit: str) -> None:
    print(
        f"{name}: median {statistics.median(values):.1f} {unit}, p99 {p99(values):.1f} {unit} "
        f"(min {min(values):.1f}, max {max(values):.1f}, n={len(values)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--concurrent", type=int, default=8)
    parser.add_argument("--limit", type=int, default=2, help="live migrations per host at a time")
    parser.add_argument("--skip-single", action="store_true", help="only the concurrent migrations")
    parser.add_argument(
        "--security",
        choices=["both", "tls", "insecure"],
        default="both",
        help="mutual TLS (havm up's default), plaintext (--insecure), or both in turn",
    )
    args = parser.parse_args()
    modes = ["tls", "insecure"] if args.security == "both" else [args.security]
    medians = {}
    for mode in modes:
        print(f"--- {mode}")
        medians[mode] = bench_cluster(args, insecure=mode == "insecure")
    if len(medians) == 2 and all(medians.values()):
        (tls_rate, tls_blackout), (plain_rate, plain_blackout) = medians["tls"], medians["insecure"]
        print(
            f"TLS cost, 1 GiB VM: rate {tls_rate:.0f} MiB/s with TLS vs {plain_rate:.0f} without "
            f"({tls_rate / plain_rate:.2f}); blackout median {tls_blackout:.1f} ms vs {plain_blackout:.1f} ms"
        )


def bench_cluster(args: argparse.Namespace, insecure: bool) -> tuple[float, float] | None:
    """One cluster's runs; the 1 GiB VM's median rate and blackout (None if skipped)."""
    with tempfile.TemporaryDirectory(prefix="havm-bench-") as tmp:
        state, topology = Path(tmp) / "state", Path(tmp) / "topology.yaml"
        topology.write_text(TOPOLOGY.replace("LIMIT", str(args.limit)))
        havm(state, "up", "--detach", "--topology", str(topology), *(["--insecure"] if insecure else []))
        try:
            address = json.loads((state / "cluster.json").read_text())["components"]["manager"]["address"]
            with sync_channel(address, client_identity(None, state), MANAGER_NAME) as channel:
                stub = manager_pb2_grpc.ManagerServiceStub(channel)
                medians = None if args.skip_single else single(stub, args.runs)
                concurrent(stub, args.runs, args.concurrent, args.limit)
                return medians
        finally:
            subprocess.run([*HAVM, "--state-dir", str(state), "down"], capture_output=True)


def single(stub: manager_pb2_grpc.ManagerServiceStub, runs: int) -> tuple[float, float]:
    create(stub, "big", "node1", 1024, dirty=50)
    time.sleep(1.0)  # let the guest dirty its memory for a while
    rates, blackouts, passes = [], [], []
    for run in range(runs):
        host = "node2" if run % 2 == 0 else "node1"
        m = migrate(stub, "big", host)
        rates.append(rate(m))
        blackouts.append(float(m.blackout_ms))
        passes.append(float(m.passes))
        print(
            f"1 GiB at 50 MiB/s, run {run + 1}: {m.bytes / MIB:.0f} MiB in {m.duration_ms} ms "
            f"({rate(m):.0f} MiB/s), {m.passes} passes, blackout {m.blackout_ms} ms"
        )
    report("1 GiB VM transfer rate", rates, "MiB/s")
    report("1 GiB VM blackout", blackouts, "ms")
    report("1 GiB VM passes", passes, "")
    run_job(
        stub, stub.OperateVm(manager_pb2.OperateVmRequest(name="big", operation=3), timeout=30).job, "stop"
    )
    run_job(stub, stub.DeleteVm(manager_pb2.DeleteVmRequest(name="big"), timeout=30).job, "delete")
    return statistics.median(rates), statistics.median(blackouts)


def concurrent(stub: manager_pb2_grpc.ManagerServiceStub, runs: int, count: int, limit: int) -> None:
    names = [f"small{i}" for i in range(count)]
    homes = {name: ("node1" if i % 2 == 0 else "node2") for i, name in enumerate(names)}
    with ThreadPoolExecutor(max_workers=count) as pool:
        list(pool.map(lambda n: create(stub, n, homes[n], 256, dirty=10), names))
        aggregate, blackouts, rates = [], [], []
        for run in range(runs):
            targets = {n: ("node2" if (homes[n] == "node1") == (run % 2 == 0) else "node1") for n in names}
            started = time.monotonic()
            done = list(pool.map(migrate, [stub] * count, names, [targets[n] for n in names]))
            wall = time.monotonic() - started
            total = sum(m.bytes for m in done) / MIB
            aggregate.append(total / wall)
            blackouts.extend(float(m.blackout_ms) for m in done)
            rates.extend(rate(m) for m in done)
            print(
                f"{count} x 256 MiB, run {run + 1}: {total:.0f} MiB in {wall:.2f} s "
                f"({total / wall:.0f} MiB/s in all), blackouts "
                f"{', '.join(str(m.blackout_ms) for m in done)} ms"
            )
    report(f"{count} concurrent migrations (limit {limit} per host), aggregate rate", aggregate, "MiB/s")
    report(f"{count} concurrent migrations (limit {limit} per host), rate of each", rates, "MiB/s")
    report(f"{count} concurrent migrations (limit {limit} per host), blackout", blackouts, "ms")


if __name__ == "__main__":
    main()

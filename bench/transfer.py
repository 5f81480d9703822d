"""Benchmark: moving a stopped VM with a 4 GiB disk across the cluster boundary.

    .venv/bin/python bench/transfer.py [--runs 3] [--disk-gib 4] [--security tls|insecure]

Starts a local cluster (`havm up --detach`): standalone hosts s1 and s2 and a two-node
Hyper-V 2008 R2 cluster c1 whose LUN san1 is zoned to s1 too. Then:

- **network transfer**: a stopped VM on s1 whose virtual disk holds `--disk-gib` GiB of
  written data moves to s2 (`havm vm migrate --transfer network`) and back, `--runs`
  times; the rate is the bytes the agents copied over the transfer's duration;
- **raw baseline**, in the same run: a plain grpc.aio client stream of the same bytes in
  the same chunk size between two processes on loopback, with the same security (mutual
  TLS with the cluster's own agent identities, or plaintext), `--runs` times;
- **SAN transfer**: the same VM, its files on san1, moves from s1 into c1 and out again;
  no byte is copied, so its duration is the handover alone.

Prints each rate, the medians, their ratio (target >= 0.7) and the SAN transfer's
duration (target < 1 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc

from havm.cli.context import client_identity
from havm.contract.identity import MANAGER_NAME, aio_channel, read_identity_file, sync_channel
from havm.v1 import manager_pb2, manager_pb2_grpc

HAVM = [sys.executable, "-m", "havm.cli.main"]
MIB = 1024 * 1024
# The agents' chunk of a network transfer, which the raw stream copies.
CHUNK = 8 * MIB
TOPOLOGY = """
version: 1
host_defaults:
  profile: hyperv-2008r2
  cpu: {vendor: GenuineIntel, model: Xeon X5570, features: [sse4_2, popcnt], cores: 16, mhz: 2933}
  memory_mb: 16384
  host_reserve_mb: 1024
  disks: [{name: C, capacity_gb: 500}]
  networks: [{name: External, bound_to: "NIC 1"}]
clusters:
  - name: c1
    profile: hyperv-2008r2
    reserve: 0
    nodes: [n1, n2]
    csvs: [{name: Volume1, capacity_gb: 2048}]
    luns: [{name: san1, capacity_gb: 100, visible_to: [n1, n2, s1]}]
hosts:
  - {name: n1}
  - {name: n2}
  - {name: s1}
  - {name: s2}
"""
_SINK = "/havm.bench.Sink/Take"


def havm(state: Path, *args: str) -> str:
    result = subprocess.run([*HAVM, "--state-dir", str(state), *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"havm {' '.join(args)} failed: {result.stderr}")
    return result.stdout


def migrate(state: Path, name: str, *args: str) -> dict:
    return json.loads(havm(state, "vm", "migrate", name, *args, "-o", "json"))


def fill_disk(state: Path, vm_id: str, gib: int) -> None:
    """Written data over the whole disk (after the journal's first MiB): what a network
    transfer must copy, as random bytes."""
    disks = list(state.glob(f"hosts/*/disks/*/{vm_id}/disk0.vhd")) + list(
        state.glob(f"san/*/*/{vm_id}/disk0.vhd")
    )
    [disk] = disks
    block = os.urandom(MIB)
    with disk.open("r+b") as handle:
        handle.seek(MIB)
        for _ in range(gib * 1024 - 1):
            handle.write(block)


# --- the raw baseline ----------------------------------------------------------------------


def _serve(address: str, identity_path: str | None, ready: multiprocessing.synchronize.Event) -> None:
    async def take(requests, context):  # type: ignore[no-untyped-def]
        count = 0
        async for chunk in requests:
            count += len(chunk)
        return count.to_bytes(8, "big")

    async def main() -> None:
        server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 * MIB)])
        handler = grpc.method_handlers_generic_handler(
            "havm.bench.Sink", {"Take": grpc.stream_unary_rpc_method_handler(take)}
        )
        server.add_generic_rpc_handlers((handler,))
        if identity_path:
            server.add_secure_port(address, read_identity_file(Path(identity_path)).server_credentials())
        else:
            server.add_insecure_port(address)
        await server.start()
        ready.set()
        await server.wait_for_termination()

    asyncio.run(main())


async def _raw_once(address: str, identity_path: str | None, peer: str, total: int) -> float:
    identity = read_identity_file(Path(identity_path)) if identity_path else None
    block = os.urandom(CHUNK)
    async with aio_channel(address, identity, peer, [("grpc.max_send_message_length", 64 * MIB)]) as channel:
        take = channel.stream_unary(_SINK)

        async def chunks():  # type: ignore[no-untyped-def]
            for _ in range(total // CHUNK):
                yield block

        started = time.perf_counter()
        received = await take(chunks())
        elapsed = time.perf_counter() - started
    assert int.from_bytes(received, "big") == total // CHUNK * CHUNK
    return total / MIB / elapsed


def raw_rates(state: Path, secure: bool, total: int, runs: int) -> list[float]:
    """A grpc.aio client stream of `total` bytes between two processes, `runs` times."""
    port = 40000 + os.getpid() % 20000
    address = f"127.0.0.1:{port}"
    server_identity = str(state / "pki" / "agents" / "s2.pem") if secure else None
    client_identity_path = str(state / "pki" / "agents" / "s1.pem") if secure else None
    ready = multiprocessing.Event()
    server = multiprocessing.Process(target=_serve, args=(address, server_identity, ready), daemon=True)
    server.start()
    try:
        if not ready.wait(20):
            raise SystemExit("the raw stream's server did not start")
        return [asyncio.run(_raw_once(address, client_identity_path, "s2", total)) for _ in range(runs)]
    finally:
        server.terminate()
        server.join(10)


# --- the run -------------------------------------------------------------------------------


def report(name: str, values: list[float], unit: str) -> float:
    median = statistics.median(values)
    print(
        f"{name}: median {median:.1f} {unit} (min {min(values):.1f}, max {max(values):.1f}, n={len(values)})"
    )
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--disk-gib", type=int, default=4)
    parser.add_argument("--security", choices=["tls", "insecure"], default="tls")
    args = parser.parse_args()
    secure = args.security == "tls"
    with tempfile.TemporaryDirectory(prefix="havm-bench-") as tmp:
        state, topology = Path(tmp) / "state", Path(tmp) / "topology.yaml"
        topology.write_text(TOPOLOGY)
        havm(state, "up", "--detach", "--topology", str(topology), *([] if secure else ["--insecure"]))
        try:
            bench(state, args, secure)
        finally:
            subprocess.run([*HAVM, "--state-dir", str(state), "down"], capture_output=True)


def bench(state: Path, args: argparse.Namespace, secure: bool) -> None:
    address = json.loads((state / "cluster.json").read_text())["components"]["manager"]["address"]
    with sync_channel(address, client_identity(None, state), MANAGER_NAME) as channel:
        stub = manager_pb2_grpc.ManagerServiceStub(channel)
        havm(state, "vm", "create", "big", "--memory-mb", "512", "--disk-gb", str(args.disk_gib),
             "--host", "s1", "--no-start")  # fmt: skip
        vm_id = stub.GetVm(manager_pb2.GetVmRequest(name="big"), timeout=10).vm.id
        fill_disk(state, vm_id, args.disk_gib)
        rates = []
        for run in range(args.runs):
            target = "s2" if run % 2 == 0 else "s1"
            moved = migrate(state, "big", "--to", target, "--transfer", "network")
            mib = moved["bytes"] / MIB
            rates.append(mib / (moved["duration_ms"] / 1000))
            print(
                f"network transfer {run + 1} to {target}: {mib:,.0f} MiB in {moved['duration_ms']} ms "
                f"({rates[-1]:.0f} MiB/s)"
            )
        total = int(moved["bytes"]) // CHUNK * CHUNK
        raw = raw_rates(state, secure, total, args.runs)
        for run, value in enumerate(raw):
            print(f"raw grpc.aio stream {run + 1}: {total / MIB:,.0f} MiB at {value:.0f} MiB/s")
        transfer_median = report("network transfer rate", rates, "MiB/s")
        raw_median = report("raw grpc.aio stream rate", raw, "MiB/s")
        print(f"network transfer / raw stream: {transfer_median / raw_median:.2f} (target >= 0.70)")
        havm(state, "vm", "delete", "big", "--yes")

        havm(state, "vm", "create", "lunvm", "--memory-mb", "512", "--disk-gb", str(args.disk_gib),
             "--host", "s1", "--storage", "lun:san1", "--no-start")  # fmt: skip
        fill_disk(state, stub.GetVm(manager_pb2.GetVmRequest(name="lunvm"), timeout=10).vm.id, args.disk_gib)
        durations = []
        for run in range(args.runs):
            into = migrate(state, "lunvm", "--to", "n1", "--make-ha", "--transfer", "san")
            out = migrate(state, "lunvm", "--to", "s1", "--transfer", "san")
            durations += [float(into["duration_ms"]), float(out["duration_ms"])]
            print(f"SAN transfer {run + 1}: into c1 {into['duration_ms']} ms, out {out['duration_ms']} ms")
        report(f"SAN transfer of the {args.disk_gib} GiB VM", durations, "ms")


if __name__ == "__main__":
    main()

"""Benchmark: judging every VM's cluster configuration at a refresh, at scale.

    .venv/bin/python bench/refresh.py [--vms 1000] [--nodes 16] [--networks 8] [--runs 20]

Three figures for one cluster of NODES nodes with NETWORKS virtual networks each and
VMS highly available VMs, each on two of those networks:

1. the manager's evaluation alone (pure core): the cluster's common networks and every
   VM's causes (core.cluster_config.ClusterView and judge), median of RUNS;
2. the store layer that judges on writes (app.config_review) re-judging every VM after
   one node's network changed, on the in-memory store, median of RUNS;
3. end to end on a simulated cluster (the real manager and real agents in one process,
   on virtual time, wall time measured): `havm cluster refresh` importing the VMs made
   on the hosts directly, then a refresh after an administrator changed a network on
   one node, which makes every VM on it unsupported.
The target is (1) under 200 ms median.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path

import yaml

from havm.contract.hosts import CpuSpec
from manager.adapters.memory_store import MemoryStore
from manager.app.config_review import ConfigJudgingStore
from manager.core.cluster_config import ClusterView, judge
from manager.core.levels import DEFAULT_LEVEL
from manager.core.model import (
    GIB,
    ClusterRecord,
    HostRecord,
    NetworkInfo,
    StorageKind,
    StorageLocation,
    VmRecord,
    VolumeInfo,
)
from manager.core.states import HostState, VmState

CPU = CpuSpec("GenuineIntel", "Xeon X5570", ("sse3",), 8, 2933)


def network_names(count: int) -> list[str]:
    return [f"Net{i}" for i in range(count)]


def records(vms: int, nodes: int, networks: int) -> tuple[list[HostRecord], ClusterRecord, list[VmRecord]]:
    names = network_names(networks)
    hosts = [
        HostRecord(
            name=f"node{n:02d}",
            cluster="c1",
            profile="hyperv-2008r2",
            address=None,
            cpu=CPU,
            memory_mb=65536,
            host_reserve_mb=2048,
            memory_free_mb=60000,
            disks=(),
            networks=tuple(NetworkInfo(name, "virtual_network", "NIC 1", i) for i, name in enumerate(names)),
            volumes=(),
            state=HostState.OK,
        )
        for n in range(nodes)
    ]
    volume = VolumeInfo("Volume1", StorageKind.CSV, 65536 * GIB, 65536 * GIB)
    cluster = ClusterRecord("c1", "hyperv-2008r2", 1, tuple(h.name for h in hosts), (volume,))
    records = [
        VmRecord(
            id=f"vm-{i}",
            name=f"vm{i:04d}",
            host=hosts[i % nodes].name,
            state=VmState.STOPPED,
            highly_available=True,
            memory_mb=512,
            cpus=1,
            disk_gb=10,
            storage=StorageLocation(StorageKind.CSV, "Volume1"),
            networks=(names[i % networks], names[(i + 1) % networks]),
        )
        for i in range(vms)
    ]
    return hosts, cluster, records


def pure_evaluation(vms: int, nodes: int, networks: int, runs: int) -> float:
    hosts, cluster, vm_records = records(vms, nodes, networks)
    # One node's Net0 is under another VLAN: a quarter of the VMs are unsupported.
    hosts[0] = replace(hosts[0], networks=(replace(hosts[0].networks[0], vlan_id=99), *hosts[0].networks[1:]))
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        view = ClusterView.of(DEFAULT_LEVEL, hosts, [cluster], vm_records)
        unsupported = sum(1 for vm in vm_records if judge(vm, view))
        times.append(time.perf_counter() - started)
    assert unsupported == 2 * vms // networks, unsupported
    return statistics.median(times)


def store_rejudging(vms: int, nodes: int, networks: int, runs: int) -> float:
    hosts, cluster, vm_records = records(vms, nodes, networks)
    times = []
    for _ in range(runs):
        store = ConfigJudgingStore(MemoryStore(), DEFAULT_LEVEL)
        store.put_cluster(cluster)
        for host in hosts:
            store.put_host(host)
        for vm in vm_records:
            store.put_vm(vm)
        changed = replace(
            hosts[0], networks=(replace(hosts[0].networks[0], vlan_id=99), *hosts[0].networks[1:])
        )
        started = time.perf_counter()
        store.put_host(changed)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def topology(nodes: int, networks: int) -> dict:
    return {
        "version": 1,
        "host_defaults": {
            "profile": "hyperv-2008r2",
            "cpu": {
                "vendor": "GenuineIntel",
                "model": "Xeon X5570",
                "features": ["sse3"],
                "cores": 8,
                "mhz": 2933,
            },
            "memory_mb": 262144,
            "host_reserve_mb": 2048,
            "disks": [{"name": "C", "capacity_gb": 500}],
            "networks": [
                {"name": n, "bound_to": "NIC 1", "vlan_id": i} for i, n in enumerate(network_names(networks))
            ],
        },
        "clusters": [
            {
                "name": "c1",
                "profile": "hyperv-2008r2",
                "nodes": [f"node{n:02d}" for n in range(nodes)],
                "csvs": [{"name": "Volume1", "capacity_gb": 65536}],
            }
        ],
        "hosts": [{"name": f"node{n:02d}"} for n in range(nodes)],
    }


def end_to_end(vms: int, nodes: int, networks: int) -> tuple[float, float, int]:
    from havm.scenario.testing import sim_cluster
    from havm.v1 import agent_pb2, agent_pb2_grpc, common_pb2

    names = network_names(networks)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "topology.yaml"
        path.write_text(yaml.safe_dump(topology(nodes, networks)))
        with sim_cluster(path, Path(tmp) / "run") as cluster:
            for i in range(vms):
                spec = common_pb2.VmSpec(
                    id=str(uuid.uuid4()),
                    name=f"vm{i:04d}",
                    memory_mb=512,
                    cpus=1,
                    disk_gb=1,
                    storage=common_pb2.StorageLocation(kind=common_pb2.STORAGE_KIND_CSV, name="Volume1"),
                    networks=[names[i % networks], names[(i + 1) % networks]],
                    highly_available=True,
                )
                stub = cluster.agent(f"node{i % nodes:02d}")
                cluster.run(stub.CreateVm(agent_pb2.AgentServiceCreateVmRequest(spec=spec)))
            started = time.perf_counter()
            refreshed = cluster.cli("cluster", "refresh")
            first = time.perf_counter() - started
            assert refreshed.exit_code == 0, refreshed.stderr
            admin = agent_pb2_grpc.HostAdminServiceStub(
                cluster.cluster.network.channel(cluster.cluster.host("node00").address)
            )
            cluster.run(
                admin.UpdateNetwork(agent_pb2.HostAdminServiceUpdateNetworkRequest(name=names[0], vlan_id=99))
            )
            started = time.perf_counter()
            refreshed = cluster.cli("cluster", "refresh")
            second = time.perf_counter() - started
            assert refreshed.exit_code == 0, refreshed.stderr
            listed = cluster.cli("vm", "list", "-o", "json")
            unsupported = sum(1 for vm in listed.json() if vm["status"] != "ok")
    return first, second, unsupported


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--vms", type=int, default=1000)
    parser.add_argument("--nodes", type=int, default=16)
    parser.add_argument("--networks", type=int, default=8)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--no-end-to-end", action="store_true", help="skip the simulated cluster")
    args = parser.parse_args()
    shape = f"{args.vms} VMs on {args.nodes} nodes with {args.networks} networks each"
    pure = pure_evaluation(args.vms, args.nodes, args.networks, args.runs)
    print(
        f"evaluation (pure core), {shape}: median {pure * 1000:.1f} ms of {args.runs} runs (target < 200 ms)"
    )
    layer = store_rejudging(args.vms, args.nodes, args.networks, max(3, args.runs // 4))
    print(
        "re-judging every VM after one node's network changed (store layer, in memory): "
        f"median {layer * 1000:.1f} ms"
    )
    if not args.no_end_to_end:
        first, second, unsupported = end_to_end(args.vms, args.nodes, args.networks)
        print(f"end to end, simulated cluster: `cluster refresh` importing {args.vms} VMs: {first:.2f} s")
        print(
            "end to end, simulated cluster: `cluster refresh` after a VLAN changed on node00: "
            f"{second:.2f} s ({unsupported} VMs now unsupported)"
        )
    return 0 if pure < 0.2 else 1


if __name__ == "__main__":
    sys.exit(main())

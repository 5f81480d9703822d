"""The application over the in-memory store and an in-memory agent port: no processes."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from manager.adapters.memory_store import MemoryStore
from manager.app.manager import ManagerApp
from manager.core.errors import FailedPreconditionError, UnavailableError
from manager.core.model import (
    CreateVmCommand,
    DiskInfo,
    Inventory,
    JobRecord,
    NetworkInfo,
    ReportedVm,
    StorageKind,
    VmOperation,
    VmRecord,
    VolumeInfo,
    Workload,
)
from manager.core.settings import Settings
from manager.core.states import HostState, JobState, VmState
from manager.core.topology import Topology, parse_topology

DEFAULT = Path(__file__).resolve().parents[2] / "havm" / "cli" / "default_topology.yaml"
GIB = 1024**3
NEXT = {
    VmOperation.START: VmState.RUNNING,
    VmOperation.SHUTDOWN: VmState.STOPPED,
    VmOperation.TURN_OFF: VmState.STOPPED,
    VmOperation.SAVE: VmState.SAVED,
    VmOperation.RESTORE: VmState.RUNNING,
    VmOperation.PAUSE: VmState.PAUSED,
    VmOperation.RESUME: VmState.RUNNING,
}


class MemoryAgents:
    """Every host's agent in one dict; a host in `silent` does not answer."""

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.vms: dict[str, dict[str, ReportedVm]] = {h.name: {} for h in topology.hosts}
        self.silent: set[str] = set()

    def _check(self, host: str) -> None:
        if host in self.silent:
            raise UnavailableError(f"agent of host {host} is unavailable (connection refused)")

    async def get_inventory(self, host: str, address: str) -> Inventory:
        self._check(host)
        spec = self.topology.host(host)
        return Inventory(
            host_name=host,
            cluster=spec.cluster,
            profile=spec.profile,
            cpu=spec.cpu,
            memory_mb=spec.memory_mb,
            memory_free_mb=spec.memory_mb - spec.host_reserve_mb,
            disks=tuple(DiskInfo(d.name, d.capacity_gb * GIB, d.capacity_gb * GIB) for d in spec.disks),
            networks=tuple(
                NetworkInfo(n.name, "virtual_network", n.bound_to, n.vlan_id) for n in spec.networks
            ),
            volumes=tuple(
                VolumeInfo(v.name, StorageKind(v.kind), v.capacity_gb * GIB, v.capacity_gb * GIB)
                for v in self.topology.volumes_visible_to(host)
            ),
            boot_id="b",
            vms=tuple(self.vms[host].values()),
        )

    async def get_vm(self, host: str, address: str, vm_id: str) -> ReportedVm:
        self._check(host)
        return self.vms[host][vm_id]

    async def create_vm(self, host: str, address: str, vm: VmRecord) -> ReportedVm:
        self._check(host)
        await asyncio.sleep(0)
        reported = ReportedVm(
            vm.id,
            vm.name,
            VmState.STOPPED,
            vm.memory_mb,
            vm.cpus,
            vm.disk_gb,
            vm.storage,
            vm.networks,
            vm.highly_available,
            vm.workload,
        )
        self.vms[host][vm.id] = reported
        return reported

    async def operate_vm(self, host: str, address: str, vm_id: str, operation: VmOperation) -> ReportedVm:
        self._check(host)
        await asyncio.sleep(0)
        self.vms[host][vm_id] = replace(self.vms[host][vm_id], state=NEXT[operation])
        return self.vms[host][vm_id]

    async def delete_vm(self, host: str, address: str, vm_id: str) -> None:
        self._check(host)
        del self.vms[host][vm_id]

    async def close(self) -> None:
        pass


@pytest.fixture
async def setup() -> tuple[ManagerApp, MemoryAgents, MemoryStore]:
    topology = parse_topology(yaml.safe_load(DEFAULT.read_text()))
    topology = topology.with_addresses(
        {h.name: f"127.0.0.1:{5000 + i}" for i, h in enumerate(topology.hosts)}
    )
    agents = MemoryAgents(topology)
    store = MemoryStore()
    app = ManagerApp(store, agents, Settings())
    app.load(topology)
    await app.refresher.refresh_all()
    return app, agents, store


def command(name: str, **kw: object) -> CreateVmCommand:
    fields: dict = dict(
        name=name,
        memory_mb=1024,
        cpus=0,
        disk_gb=0,
        highly_available=True,
        host=None,
        storage=None,
        networks=(),
        workload=Workload(),
        no_start=False,
    )
    fields.update(kw)
    return CreateVmCommand(**fields)


async def run(app: ManagerApp, job: JobRecord) -> list[JobRecord]:
    return [j async for j in app.watch_job(job.id)]


async def test_create_streams_progress_to_completion(
    setup: tuple[ManagerApp, MemoryAgents, MemoryStore],
) -> None:
    app, agents, _ = setup
    job, vm = app.create_vm(command("web1"))
    assert vm.cpus == 1 and vm.disk_gb == 20 and vm.host and vm.host.startswith("node")
    seen = await run(app, job)
    assert seen[0].state is JobState.RUNNING and seen[-1].state is JobState.COMPLETED
    assert len(seen) >= 3 and seen[-1].progress == 100
    assert app.get_vm("web1").state is VmState.RUNNING
    assert agents.vms[vm.host][vm.id].state is VmState.RUNNING


async def test_operations_on_one_vm_are_serialized(
    setup: tuple[ManagerApp, MemoryAgents, MemoryStore],
) -> None:
    app, _, _ = setup
    job, _ = app.create_vm(command("web1"))
    await run(app, job)
    pause = app.operate_vm("web1", VmOperation.PAUSE)
    # Accepted against the state now; checked again when its turn comes.
    again = app.operate_vm("web1", VmOperation.PAUSE)
    first, second = await asyncio.gather(run(app, pause), run(app, again))
    assert first[-1].state is JobState.COMPLETED
    assert second[-1].state is JobState.FAILED and "VM web1 is paused" in second[-1].error


async def test_silent_host_then_missing_vm(setup: tuple[ManagerApp, MemoryAgents, MemoryStore]) -> None:
    app, agents, store = setup
    job, vm = app.create_vm(command("solo", highly_available=False))
    await run(app, job)
    assert vm.host == "standalone1"
    agents.silent.add("standalone1")
    await app.refresher.refresh(["standalone1"])
    host = store.get_host("standalone1")
    assert host is not None and host.state is HostState.NOT_RESPONDING
    assert "connection refused" in host.state_reason
    assert app.get_vm("solo").state is VmState.UNKNOWN
    with pytest.raises(FailedPreconditionError):
        app.operate_vm("solo", VmOperation.SHUTDOWN)
    agents.silent.clear()
    del agents.vms["standalone1"][vm.id]
    await app.refresher.refresh(["standalone1"])
    assert app.get_vm("solo").state is VmState.MISSING
    deleted = app.delete_vm("solo")
    assert (await run(app, deleted))[-1].state is JobState.COMPLETED
    assert app.list_vms() == []


async def test_refresh_job_fails_when_no_host_answers(
    setup: tuple[ManagerApp, MemoryAgents, MemoryStore],
) -> None:
    app, agents, _ = setup
    agents.silent.update({"node1", "node2", "node3", "node4"})
    seen = await run(app, app.refresh("cluster1"))
    assert seen[-1].state is JobState.FAILED and "no host answered" in seen[-1].error
    partial = await run(app, app.refresh(""))
    assert partial[-1].state is JobState.COMPLETED
    assert "1 of 5 host(s) ok" in partial[-1].message


async def test_jobs_left_running_fail_on_load(setup: tuple[ManagerApp, MemoryAgents, MemoryStore]) -> None:
    app, agents, store = setup
    now = datetime.now(UTC)
    store.put_job(JobRecord("old", "create_vm", "x", JobState.RUNNING, 40, "Creating", "", now, now))
    app.load(agents.topology)
    job = store.get_job("old")
    assert job is not None and job.state is JobState.FAILED
    assert job.error == "the manager restarted while this job ran"
    assert app.status().jobs_running == 0

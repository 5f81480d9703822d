"""Capacity in the manager application over the real agents, on virtual time: the reserve
judged on every change and told as events, placement refused and overridden, the
reserve changed; maintenance mode live and save, a failed evacuation, and stop.

The cluster is three nodes of 30,720 MB free and a standalone host (manager_testkit);
the manager's app runs on a SQLite database it is restarted on (manager_sim).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from manager_sim import SETTINGS, SimManager, sim_agents
from manager_testkit import HOSTS, topology_data

from havm.contract.topology import parse_topology
from havm.scenario.sim_agent import intercept, on_virtual_time
from manager.core.errors import FailedPreconditionError, InvalidArgumentError
from manager.core.host_choice import VmShape
from manager.core.inventory import set_host_state
from manager.core.maintenance import MaintenanceMode
from manager.core.model import CreateVmCommand, JobStepOutcome, VmOperation, Workload
from manager.core.placement import PlacementGoal, RatingReason, RatingWeights
from manager.core.settings import Settings
from manager.core.states import ClusterState, HostState, JobState, VmState
from node_agent.core.power import PowerState

GIB8 = 8192
# Live-migrated and saved VMs are small: their memory is really copied and written.
SMALL = 64


async def booted(tmp_path: Path, settings: Settings = SETTINGS) -> SimManager:
    sim = await sim_agents(tmp_path, topology_data(dict.fromkeys(HOSTS)))
    c = SimManager(sim, tmp_path / "manager.db", settings)
    await c.app.refresher.refresh_all()
    return c


def command(name: str, memory_mb: int = GIB8, host: str | None = None, **kw: Any) -> CreateVmCommand:
    fields: dict = dict(
        name=name,
        memory_mb=memory_mb,
        cpus=1,
        disk_gb=10,
        highly_available=True,
        host=host,
        storage=None,
        networks=(),
        workload=Workload(),
        no_start=False,
    )
    fields.update(kw)
    return CreateVmCommand(**fields)


async def create(c: SimManager, name: str, memory_mb: int = GIB8, host: str | None = None) -> str:
    job, vm = c.app.create_vm(command(name, memory_mb, host))
    done = await c.finished(job)
    assert done.state is JobState.COMPLETED, done.error
    return done.message


def cluster_events(c: SimManager) -> list[str]:
    return [e.detail for e in c.app.events.recent(500) if e.kind == "cluster_state"]


@on_virtual_time
async def test_the_reserve_refuses_automatic_placement_and_a_named_node_overrides(tmp_path: Path) -> None:
    c = await booted(tmp_path)
    # Three nodes of 30,720 MB: any two hold six VMs of 8 GiB, so reserve 1 admits six.
    for i in range(6):
        message = await create(c, f"v{i}")
        assert "best rated with" in message
    cluster1 = c.app.get_cluster("cluster1")
    assert c.app.cluster_report(cluster1).state is ClusterState.OK
    view = c.app.rate_hosts(VmShape(memory_mb=GIB8, cpus=1, disk_gb=10, highly_available=True))
    assert view.best_host is None
    nodes = [r for r in view.ratings if r.cluster == "cluster1"]
    assert nodes and all(r.stars == 0 and r.blocking[0].code is RatingReason.WOULD_OVERCOMMIT for r in nodes)
    jobs_before = len(c.app.list_jobs())
    with pytest.raises(FailedPreconditionError) as refused:
        c.app.create_vm(command("v6"))
    assert "refused by the cluster reserve" in refused.value.message and "failed" in refused.value.message
    assert len(c.app.list_jobs()) == jobs_before and c.app.list_vms() and len(c.app.list_vms()) == 6
    # The administrator overrides by naming the node.
    message = await create(c, "v6", host="node3")
    assert "overriding the reserve; cluster cluster1 is now overcommitted" in message
    report = c.app.cluster_report(cluster1)
    assert report.state is ClusterState.OVERCOMMITTED and report.overcommit is not None
    assert any("ok => overcommitted" in d for d in cluster_events(c))
    # Lowering the reserve makes it ok again, persisted, told as an event.
    with pytest.raises(InvalidArgumentError, match="reserve: must be from 0 to 2"):
        c.app.update_cluster("cluster1", 3)
    job, _ = c.app.update_cluster("cluster1", 0)
    done = await c.finished(job)
    assert done.state is JobState.COMPLETED and "reserve 1 => 0; the cluster is ok" in done.message
    assert c.app.get_cluster("cluster1").reserve == 0
    assert cluster_events(c)[-1].startswith("cluster cluster1 overcommitted => ok")
    # A restarted manager keeps the reserve set through the API over the topology's.
    await c.restart()
    assert c.app.get_cluster("cluster1").reserve == 0
    await c.stop()


@on_virtual_time
async def test_a_node_failure_is_judged_at_once(tmp_path: Path) -> None:
    c = await booted(tmp_path)
    for i in range(4):
        await create(c, f"v{i}")
    assert c.app.cluster_report(c.app.get_cluster("cluster1")).state is ClusterState.OK
    host = c.app.store.get_host("node1")
    assert host is not None
    c.app.store.put_host(set_host_state(host, HostState.NOT_RESPONDING, "test"))
    report = c.app.cluster_report(c.app.get_cluster("cluster1"))
    # Two healthy nodes left, reserve 1: one node must hold every HA VM.
    assert report.state is ClusterState.OVERCOMMITTED
    assert "node1 is not_responding" in (report.overcommit.detail if report.overcommit else "")
    await c.stop()


@on_virtual_time
async def test_maintenance_live_evacuates_every_ha_vm_spread_by_rating(tmp_path: Path) -> None:
    c = await booted(tmp_path)
    for name in ("a", "b", "c"):
        await create(c, name, SMALL, host="node1")
    await create(c, "stopped", SMALL, host="node1")
    assert (await c.finished(c.app.operate_vm("stopped", VmOperation.TURN_OFF))).state is JobState.COMPLETED
    job = c.app.start_maintenance("node1", None)
    done = await c.finished(job)
    assert done.state is JobState.COMPLETED, done.error
    assert done.message == "Host node1 is in maintenance mode: 3 VM(s) live-migrated, 0 saved"
    outcomes = {s.vm: (s.outcome, s.host) for s in done.steps}
    assert set(outcomes) == {"a", "b", "c"}
    assert all(o is JobStepOutcome.LIVE_MIGRATED for o, _ in outcomes.values())
    hosts = {c.app.get_vm(n).host for n in ("a", "b", "c")}
    assert hosts == {"node2", "node3"}  # spread, not piled on one node
    for name in ("a", "b", "c"):  # the agents moved them: each runs where it is recorded
        vm = c.app.get_vm(name)
        assert c.running(vm.id) == [vm.host]
    stopped = c.app.get_vm("stopped")
    assert stopped.host == "node1" and c.running(stopped.id) == []
    assert c.app.get_host("node1").host.state is HostState.MAINTENANCE
    # In maintenance: zero stars, no placement, no migration target, no create there.
    view = c.app.rate_hosts(VmShape(memory_mb=512, cpus=1, disk_gb=10, highly_available=True))
    node1 = next(r for r in view.ratings if r.host == "node1")
    assert node1.stars == 0 and node1.blocking[0].code is RatingReason.MAINTENANCE
    with pytest.raises(FailedPreconditionError, match="node1 is in maintenance mode"):
        c.app.create_vm(command("x", 512, host="node1"))
    with pytest.raises(FailedPreconditionError, match="maintenance"):
        await c.app.migrate_vm("a", "node1")
    with pytest.raises(FailedPreconditionError, match="in maintenance mode already"):
        c.app.start_maintenance("node1", None)
    # A refresh keeps it in maintenance.
    await c.app.refresher.refresh_all()
    assert c.app.get_host("node1").host.state is HostState.MAINTENANCE
    # Stop: ok again; nothing moves back.
    stop = await c.finished(c.app.stop_maintenance("node1"))
    assert stop.state is JobState.COMPLETED and "nothing moved back" in stop.message
    assert c.app.get_host("node1").host.state is HostState.OK
    assert {c.app.get_vm(n).host for n in ("a", "b", "c")} == hosts
    await c.stop()


def incompatible(reason: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A destination that refuses every VM, for `reason`, when asked whether it can take it."""

    def wrap(compatibility: Callable[..., Any]) -> Callable[..., Any]:
        def refusing(*args: Any) -> list[str]:
            return [*compatibility(*args), reason]

        return refusing

    return wrap


@on_virtual_time
async def test_maintenance_fails_when_one_live_migration_fails_and_keeps_what_moved(tmp_path: Path) -> None:
    c = await booted(tmp_path)
    for name in ("a", "b"):
        await create(c, name, SMALL, host="node1")
    intercept(
        c.sim.vm_host("node3"), "compatibility", incompatible("host node3 has no virtual network 'Backend'")
    )
    done = await c.finished(c.app.start_maintenance("node1", MaintenanceMode.LIVE))
    assert done.state is JobState.FAILED
    assert "host node1 did not enter maintenance mode: live migration to node3 of VM" in done.error
    assert "no virtual network 'Backend'" in done.error
    outcomes = {s.outcome for s in done.steps}
    assert outcomes == {JobStepOutcome.LIVE_MIGRATED, JobStepOutcome.FAILED}
    assert c.app.get_host("node1").host.state is HostState.OK
    moved = [s.vm for s in done.steps if s.outcome is JobStepOutcome.LIVE_MIGRATED]
    failed = [s.vm for s in done.steps if s.outcome is JobStepOutcome.FAILED]
    assert c.app.get_vm(moved[0]).host == "node2"  # not moved back
    assert c.app.get_vm(failed[0]).host == "node1" and c.app.get_vm(failed[0]).state is VmState.RUNNING
    assert c.running(c.app.get_vm(moved[0]).id) == ["node2"]
    assert c.running(c.app.get_vm(failed[0]).id) == ["node1"]
    await c.stop()


@on_virtual_time
async def test_maintenance_save_saves_every_running_vm_and_stop_leaves_them_saved(tmp_path: Path) -> None:
    c = await booted(tmp_path)
    for name in ("a", "b"):
        await create(c, name, SMALL, host="node2")
    done = await c.finished(c.app.start_maintenance("node2", MaintenanceMode.SAVE))
    assert done.state is JobState.COMPLETED, done.error
    assert done.message == "Host node2 is in maintenance mode: 0 VM(s) live-migrated, 2 saved"
    assert {(s.vm, s.outcome) for s in done.steps} == {
        ("a", JobStepOutcome.SAVED),
        ("b", JobStepOutcome.SAVED),
    }
    assert [c.app.get_vm(n).state for n in ("a", "b")] == [VmState.SAVED, VmState.SAVED]
    await c.finished(c.app.stop_maintenance("node2"))
    assert [(c.app.get_vm(n).state, c.app.get_vm(n).host) for n in ("a", "b")] == [
        (VmState.SAVED, "node2"),
        (VmState.SAVED, "node2"),
    ]
    for name in ("a", "b"):
        on_agent = c.on_agent("node2", c.app.get_vm(name).id)
        assert on_agent is not None and on_agent.state is PowerState.SAVED
    await c.stop()


@on_virtual_time
async def test_maintenance_is_refused_on_a_host_that_is_not_ok(tmp_path: Path) -> None:
    c = await booted(tmp_path)
    host = c.app.store.get_host("node3")
    assert host is not None
    c.app.store.put_host(set_host_state(host, HostState.NOT_RESPONDING, "no answer"))
    with pytest.raises(FailedPreconditionError, match="node3 is not_responding .* only a host that is ok"):
        c.app.start_maintenance("node3", None)
    with pytest.raises(FailedPreconditionError, match="not in maintenance mode"):
        c.app.stop_maintenance("node2")
    await c.stop()


@on_virtual_time
async def test_resource_maximization_fills_one_node_before_the_next(tmp_path: Path) -> None:
    c = await booted(tmp_path, replace(SETTINGS, placement_goal=PlacementGoal.RESOURCE_MAXIMIZATION))
    for name in ("p1", "p2", "p3"):
        assert "best rated" in await create(c, name, 2048)
    assert len({c.app.get_vm(n).host for n in ("p1", "p2", "p3")}) == 1
    await c.stop()


def test_the_managers_flags_win_over_the_topologys_placement_section() -> None:
    from manager.__main__ import UsageError, parse_args, placement_settings

    data = topology_data({})
    data["hosts"] = [{"name": "h1", "address": "127.0.0.1:1"}]
    data["clusters"] = []
    data["placement"] = {"goal": "resource_maximization", "memory_weight": 2}
    topology = parse_topology(data)
    base = ["--topology", "t.yaml", "--state-dir", "s", "--listen", "127.0.0.1:1", "--insecure"]
    chosen = placement_settings(parse_args(base), topology)
    assert chosen["placement_goal"] is PlacementGoal.RESOURCE_MAXIMIZATION
    assert chosen["rating_weights"] == RatingWeights(memory=2.0, cpu=1.0)
    flags = parse_args([*base, "--placement-goal", "load_balancing", "--cpu-weight", "0"])
    chosen = placement_settings(flags, topology)
    assert chosen["placement_goal"] is PlacementGoal.LOAD_BALANCING
    assert chosen["rating_weights"] == RatingWeights(memory=2.0, cpu=0.0)
    with pytest.raises(UsageError, match="at least one must be above 0"):
        placement_settings(parse_args([*base, "--memory-weight", "0", "--cpu-weight", "0"]), topology)

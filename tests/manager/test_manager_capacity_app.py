"""Capacity in the manager application against fake agents over real gRPC: the reserve
judged on every change and told as events, placement refused and overridden, the
reserve changed; maintenance mode live and save, a failed evacuation, and stop."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from manager_fake_agent import FakeAgent
from manager_testkit import topology_for
from test_manager_migration_app import Cluster

from manager.core.errors import FailedPreconditionError, InvalidArgumentError
from manager.core.host_choice import VmShape
from manager.core.maintenance import MaintenanceMode
from manager.core.model import CreateVmCommand, JobStepOutcome, VmOperation, Workload
from manager.core.placement import PlacementGoal, RatingReason, RatingWeights
from manager.core.states import ClusterState, HostState, JobState, VmState
from manager.core.topology import parse_topology

GIB8 = 8192


@pytest.fixture
async def cluster(fake_agents: dict[str, FakeAgent], tmp_path: Any) -> Any:
    c = Cluster(fake_agents, tmp_path / "manager.db")
    await c.app.refresher.refresh_all()
    yield c
    await c.stop()


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


async def create(c: Cluster, name: str, memory_mb: int = GIB8, host: str | None = None) -> str:
    job, vm = c.app.create_vm(command(name, memory_mb, host))
    done = await c.finished(job)
    assert done.state is JobState.COMPLETED, done.error
    return done.message


def cluster_events(c: Cluster) -> list[str]:
    return [e.detail for e in c.app.events.recent(500) if e.kind == "cluster_state"]


async def test_the_reserve_refuses_automatic_placement_and_a_named_node_overrides(cluster: Cluster) -> None:
    c = cluster
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
    await c.stop()
    c.app = c.open()
    assert c.app.get_cluster("cluster1").reserve == 0


async def test_a_node_failure_is_judged_at_once(cluster: Cluster) -> None:
    c = cluster
    for i in range(4):
        await create(c, f"v{i}")
    assert c.app.cluster_report(c.app.get_cluster("cluster1")).state is ClusterState.OK
    host = c.app.store.get_host("node1")
    assert host is not None
    from manager.core.inventory import set_host_state

    c.app.store.put_host(set_host_state(host, HostState.NOT_RESPONDING, "test"))
    report = c.app.cluster_report(c.app.get_cluster("cluster1"))
    # Two healthy nodes left, reserve 1: one node must hold every HA VM.
    assert report.state is ClusterState.OVERCOMMITTED
    assert "node1 is not_responding" in (report.overcommit.detail if report.overcommit else "")


async def test_maintenance_live_evacuates_every_ha_vm_spread_by_rating(cluster: Cluster) -> None:
    c = cluster
    for name in ("a", "b", "c"):
        await create(c, name, 2048, host="node1")
    await create(c, "stopped", 1024, host="node1")
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


async def test_maintenance_fails_when_one_live_migration_fails_and_keeps_what_moved(cluster: Cluster) -> None:
    c = cluster
    for name in ("a", "b"):
        await create(c, name, 2048, host="node1")
    c.agents["node3"].host.incompatible = ("host node3 has no virtual network 'Backend'",)
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


async def test_maintenance_save_saves_every_running_vm_and_stop_leaves_them_saved(cluster: Cluster) -> None:
    c = cluster
    for name in ("a", "b"):
        await create(c, name, 2048, host="node2")
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


async def test_maintenance_is_refused_on_a_host_that_is_not_ok(cluster: Cluster) -> None:
    c = cluster
    host = c.app.store.get_host("node3")
    assert host is not None
    from manager.core.inventory import set_host_state

    c.app.store.put_host(set_host_state(host, HostState.NOT_RESPONDING, "no answer"))
    with pytest.raises(FailedPreconditionError, match="node3 is not_responding .* only a host that is ok"):
        c.app.start_maintenance("node3", None)
    with pytest.raises(FailedPreconditionError, match="not in maintenance mode"):
        c.app.stop_maintenance("node2")


async def test_resource_maximization_fills_one_node_before_the_next(
    fake_agents: dict[str, FakeAgent], tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import test_manager_migration_app as kit

    monkeypatch.setattr(
        kit, "SETTINGS", replace(kit.SETTINGS, placement_goal=PlacementGoal.RESOURCE_MAXIMIZATION)
    )
    c = Cluster(fake_agents, tmp_path / "manager.db")
    try:
        await c.app.refresher.refresh_all()
        for name in ("p1", "p2", "p3"):
            assert "best rated" in await create(c, name, 2048)
        assert len({c.app.get_vm(n).host for n in ("p1", "p2", "p3")}) == 1
    finally:
        await c.stop()


def test_the_managers_flags_win_over_the_topologys_placement_section() -> None:
    from manager.__main__ import UsageError, parse_args, placement_settings

    data = topology_for({})
    data["hosts"] = [{"name": "h1", "address": "127.0.0.1:1"}]
    data["clusters"] = []
    data["placement"] = {"goal": "resource_maximization", "memory_weight": 2}
    topology = parse_topology(data)
    base = ["--topology", "t.yaml", "--state-dir", "s", "--listen", "127.0.0.1:1"]
    chosen = placement_settings(parse_args(base), topology)
    assert chosen["placement_goal"] is PlacementGoal.RESOURCE_MAXIMIZATION
    assert chosen["rating_weights"] == RatingWeights(memory=2.0, cpu=1.0)
    flags = parse_args([*base, "--placement-goal", "load_balancing", "--cpu-weight", "0"])
    chosen = placement_settings(flags, topology)
    assert chosen["placement_goal"] is PlacementGoal.LOAD_BALANCING
    assert chosen["rating_weights"] == RatingWeights(memory=2.0, cpu=0.0)
    with pytest.raises(UsageError, match="at least one must be above 0"):
        placement_settings(parse_args([*base, "--memory-weight", "0", "--cpu-weight", "0"]), topology)

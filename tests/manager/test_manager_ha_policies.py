"""Failover policies in the manager, in process on virtual time: owners during a failover,
waiting for a possible owner, the threshold, failures that survive refreshes, repair,
and a host whose agent announces it leaves. The agents are the real ones (see
test_manager_ha_app)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from test_manager_ha_app import Cluster, booted

from havm.scenario.sim_agent import on_virtual_time
from manager.adapters.mqtt import Status
from manager.core.errors import FailedPreconditionError
from manager.core.model import FailedAction, FailoverPolicy, JobRecord, VmOperation
from manager.core.repair import RepairAction
from manager.core.states import HostState, VmState


async def done(cluster: Cluster, job: JobRecord) -> JobRecord:
    async for update in cluster.app.jobs.watch(job.id):
        job = update
    return job


def running(cluster: Cluster, vm_id: str) -> list[str]:
    """Where the VM runs on hosts that are up (a crashed host's copy died with it)."""
    return [h for h in cluster.running(vm_id) if h in cluster.alive]


async def crash(cluster: Cluster, host: str, seconds: float = 8) -> None:
    cluster.crash(host)
    await cluster.advance(seconds)


async def boot(cluster: Cluster, host: str, seconds: float = 4) -> None:
    await cluster.boot(host)
    await cluster.advance(seconds)


@on_virtual_time
async def test_a_failover_takes_the_first_preferred_owner_that_is_up(tmp_path: Path) -> None:
    cluster = await booted(tmp_path)
    policy = FailoverPolicy(preferred_owners=("node4", "node3"), possible_owners=("node3", "node4", "node1"))
    await cluster.create("web", "node1", policy=policy)
    await crash(cluster, "node1")
    vm = cluster.vm("web")
    assert (vm.host, vm.state) == ("node4", VmState.RUNNING)
    assert running(cluster, vm.id) == ["node4"]
    assert len(vm.failover_times) == 1
    await crash(cluster, "node4")
    vm = cluster.vm("web")
    assert (vm.host, vm.state) == ("node3", VmState.RUNNING)


@on_virtual_time
async def test_a_vm_waits_for_a_possible_owner_and_starts_when_it_returns(tmp_path: Path) -> None:
    cluster = await booted(tmp_path)
    await cluster.create("pinned", "node2", policy=FailoverPolicy(possible_owners=("node2",)))
    await crash(cluster, "node2")
    vm = cluster.vm("pinned")
    assert vm.state is VmState.WAITING
    assert "none of its possible owners (node2) can be tried" in vm.reason
    assert running(cluster, vm.id) == []
    await boot(cluster, "node2", seconds=8)
    cluster.ha.retry_waiting()  # what the HA loop does every capacity_retry_interval_s
    await cluster.ha.idle()
    vm = cluster.vm("pinned")
    assert (vm.host, vm.state) == ("node2", VmState.RUNNING)
    assert running(cluster, vm.id) == ["node2"]


@on_virtual_time
async def test_the_threshold_leaves_a_vm_failed_and_the_failure_survives_refreshes(tmp_path: Path) -> None:
    cluster = await booted(tmp_path)
    await cluster.create("capped", "node1", policy=FailoverPolicy(max_failovers=1))
    await crash(cluster, "node1")
    first = cluster.vm("capped")
    assert first.state is VmState.RUNNING and first.host != "node1"
    await crash(cluster, first.host or "")
    vm = cluster.vm("capped")
    assert vm.state is VmState.FAILED and vm.failed_action is FailedAction.THRESHOLD
    assert "failover threshold reached: 1 failover(s) in the last 6 h, at most 1 allowed" in vm.reason
    await cluster.app.refresher.refresh_all()
    await cluster.advance(3)
    after = cluster.vm("capped")
    assert (after.state, after.reason, after.failed_action) == (vm.state, vm.reason, vm.failed_action)


@on_virtual_time
async def test_old_failovers_leave_the_period_and_no_longer_count(tmp_path: Path) -> None:
    cluster = await booted(tmp_path)
    long_ago = datetime.now(UTC) - timedelta(hours=7)
    vm = await cluster.create("veteran", "node1", policy=FailoverPolicy(max_failovers=1))
    cluster.store.put_vm(replace(cluster.vm("veteran"), failover_times=(long_ago,)))
    await crash(cluster, "node1")
    vm = cluster.vm("veteran")
    assert vm.state is VmState.RUNNING and vm.host != "node1"
    assert len(vm.failover_times) == 1 and vm.failover_times[0] > long_ago


@on_virtual_time
async def test_repair_retry_restarts_a_vm_failed_by_its_threshold(tmp_path: Path) -> None:
    cluster = await booted(tmp_path)
    await cluster.create("again", "node3", policy=FailoverPolicy(max_failovers=0))
    await crash(cluster, "node3")
    assert cluster.vm("again").state is VmState.FAILED
    job, _ = cluster.app.repair_vm("again", RepairAction.RETRY)
    await done(cluster, job)
    assert cluster.vm("again").state is VmState.WAITING
    cluster.ha.retry_waiting()  # what the HA loop does every capacity_retry_interval_s
    await cluster.ha.idle()
    vm = cluster.vm("again")
    assert vm.state is VmState.RUNNING and vm.host != "node3" and vm.failed_action is None
    assert len(running(cluster, vm.id)) == 1


@on_virtual_time
async def test_repair_undo_and_ignore_work_while_the_host_is_down(tmp_path: Path) -> None:
    cluster = await booted(tmp_path)
    for name in ("undo", "ignore"):
        await cluster.create(name, "node2", policy=FailoverPolicy(max_failovers=0))
    await crash(cluster, "node2")
    for name, action in (("undo", RepairAction.UNDO), ("ignore", RepairAction.IGNORE)):
        job, _ = cluster.app.repair_vm(name, action)
        assert (await done(cluster, job)).error == ""
    assert (cluster.vm("undo").state, cluster.vm("undo").host) == (VmState.STOPPED, "node2")
    assert cluster.vm("ignore").state is VmState.UNKNOWN
    # The host comes back with its copy running (as an agent's own start would): undo
    # turns it off, ignore takes it as it is.
    await cluster.boot("node2")
    for name in ("undo", "ignore"):
        try:
            await cluster.agents.operate_vm(
                "node2", cluster.address("node2"), cluster.vm(name).id, VmOperation.START
            )
        except FailedPreconditionError:
            pass  # it came back running already
    assert running(cluster, cluster.vm("ignore").id) == ["node2"]
    await cluster.advance(6)
    await asyncio.sleep(0.6)  # the undo's watch looks every half second
    assert running(cluster, cluster.vm("undo").id) == []
    assert cluster.vm("undo").state is VmState.STOPPED
    assert cluster.vm("ignore").state is VmState.RUNNING


@on_virtual_time
async def test_an_agent_that_announces_its_shutdown_is_stopped_and_its_vms_restart_at_once(
    tmp_path: Path,
) -> None:
    cluster = await booted(tmp_path)
    await cluster.create("moved", "node4")
    boot_id = cluster.sim.vm_host("node4").boot_id
    # It announces it leaves, then answers nothing (its management path cut, the process
    # still there: the same boot can answer again later).
    cluster.alive.discard("node4")
    cluster.sim.isolate("node4", "all")
    cluster.ha.on_message(Status("node4", False, boot_id, stopped=True))
    await cluster.ha.idle()
    assert cluster.host("node4") is HostState.STOPPED
    vm = cluster.vm("moved")
    assert vm.state is VmState.RUNNING and vm.host != "node4"
    # Well past the detection window: a stopped host is never suspect nor fenced.
    await cluster.advance(10)
    assert cluster.host("node4") is HostState.STOPPED
    cluster.sim.heal("node4")
    cluster.alive.add("node4")
    await cluster.advance(4)
    assert cluster.host("node4") is HostState.STOPPED, "the same boot answering brought it back"
    cluster.crash("node4")
    await cluster.boot("node4")  # a new boot
    await cluster.app.refresher.refresh(["node4"])
    assert cluster.host("node4") is HostState.OK

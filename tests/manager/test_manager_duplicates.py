"""Duplicate copies: the pure decision, a model of random cluster histories, and the
refresh and resolver services in process over the real agents, on virtual time.

A VM must never run on two hosts. A copy started behind the manager's back (an
agent's own API, a host back from a failure that never applied its isolation
response) is found at a refresh and stopped; the copy holding the newest lease stays.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from havm.contract.topology import parse_topology
from havm.scenario.sim_agent import SimAgents, intercept, on_virtual_time
from manager.adapters.memory_store import MemoryStore
from manager.app.claims import Claim, VmClaims
from manager.app.manager import ManagerApp
from manager.app.refresh import RefreshService
from manager.core.duplicates import (
    Duplicate,
    KeepReason,
    active_copies,
    find_duplicates,
    held_elsewhere,
    incident_for,
)
from manager.core.model import (
    IncidentKind,
    ReportedVm,
    StorageKind,
    StorageLocation,
    VmOperation,
    VmRecord,
)
from manager.core.settings import Settings
from manager.core.states import VmState
from node_agent.core.power import Operation, PowerState

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

# ----------------------------------------------------------------- the pure decision


def test_the_copy_holding_the_newest_lease_is_kept_whatever_the_record_says() -> None:
    [dup] = find_duplicates({"n1": {"a": 1}, "n2": {"a": 3}, "n3": {"a": 2}}, {"a": "n1"})
    assert (dup.keep, dup.stop, dup.reason) == ("n2", ("n1", "n3"), KeepReason.NEWEST_GENERATION)
    assert dup.generations == (("n2", 3), ("n1", 1), ("n3", 2))
    assert dup.hosts == ("n2", "n1", "n3")


def test_a_tie_keeps_the_recorded_host_else_the_first_by_name() -> None:
    reports = {"n1": {"a": 2}, "n2": {"a": 2}, "n3": {"a": 1}}
    [dup] = find_duplicates(reports, {"a": "n2"})
    assert (dup.keep, dup.stop, dup.reason) == ("n2", ("n1", "n3"), KeepReason.RECORDED_HOST)
    # Recorded on the older copy's host: the tie is among the newest copies only.
    [dup] = find_duplicates(reports, {"a": "n3"})
    assert (dup.keep, dup.stop, dup.reason) == ("n1", ("n2", "n3"), KeepReason.FIRST_HOST)
    [dup] = find_duplicates(reports, {})
    assert dup.keep == "n1" and dup.reason is KeepReason.FIRST_HOST


def test_single_copies_busy_vms_and_other_hosts_vms_are_left_alone() -> None:
    reports = {"n1": {"a": 1, "b": 1, "c": 1}, "n2": {"a": 1, "b": 1}, "n3": {"c": 2}}
    assert {d.vm_id for d in find_duplicates(reports, {})} == {"a", "b", "c"}
    assert {d.vm_id for d in find_duplicates(reports, {}, busy={"b"})} == {"a", "c"}
    assert {d.vm_id for d in find_duplicates(reports, {}, involving="n3")} == {"c"}
    assert find_duplicates({"n1": {"a": 1}, "n2": {"b": 1}}, {}) == ()
    assert find_duplicates({}, {}) == ()


def reported(vm_id: str, state: VmState, generation: int = 1, migration_id: str = "") -> ReportedVm:
    return ReportedVm(vm_id, vm_id, state, 1, 1, 1, None, (), True, lease_generation=generation,
                      migration_id=migration_id)  # fmt: skip


def record(vm_id: str, host: str | None, generation: int) -> VmRecord:
    return VmRecord(vm_id, vm_id, host, VmState.RUNNING, True, 1, 1, 1, None, lease_generation=generation)


def test_only_copies_holding_memory_and_not_migrating_count() -> None:
    vms = [
        reported("run", VmState.RUNNING, 3),
        reported("pause", VmState.PAUSED),
        reported("start", VmState.STARTING),
        reported("stop", VmState.STOPPED),
        reported("saved", VmState.SAVED),
        reported("saving", VmState.SAVING),
        reported("moving", VmState.RUNNING, migration_id="m1"),
    ]
    assert active_copies(vms) == {"run": 3, "pause": 1, "start": 1}


def test_a_copy_beside_the_running_one_does_not_take_its_record() -> None:
    records = {"a": record("a", "n1", 1), "b": record("b", "n1", 2), "c": record("c", "n3", 1)}
    reports = {"n1": {"a": 1, "b": 2}, "n3": {}}
    here = [
        reported("a", VmState.STOPPED, 1),  # at rest, the same lease as the running copy: held
        reported("b", VmState.RUNNING, 3),  # newer than the running copy: it is the VM now
        reported("c", VmState.STOPPED, 1),  # its recorded host does not run it
        reported("d", VmState.RUNNING, 1),  # unknown to the manager: imported as usual
    ]
    assert held_elsewhere("n2", here, records, reports) == {"a"}
    # c was just created on n3, after n3's latest report: whether n3 runs it is not known yet.
    assert held_elsewhere("n2", here, records, reports, unconfirmed={"c", "b"}) == {"a", "c"}
    # Older than the record: reconcile's stale rule, not this one.
    assert held_elsewhere("n2", [reported("b", VmState.STOPPED, 1)], records, reports) == set()
    assert held_elsewhere("n1", here, records, reports) == set()


def test_the_incident_names_the_kept_host_first_and_says_why() -> None:
    dup = Duplicate("a", "n2", ("n1", "n3"), KeepReason.NEWEST_GENERATION, (("n2", 3), ("n1", 1), ("n3", 2)))
    incident = incident_for("web1", dup, ["n1"], NOW)
    assert incident.kind is IncidentKind.DUPLICATE_COPY and incident.time == NOW
    assert incident.hosts == ("n2", "n1")  # n3's copy could not be stopped
    assert incident.detail.startswith("VM web1 ran on n2 (lease generation 3) and on n1 (lease generation 1)")
    assert "newest lease" in incident.detail and "n3" not in incident.detail


# ------------------------------------------- random histories, on a model of the hosts

HOSTS = ("h1", "h2", "h3", "h4")
VMS = ("a", "b")


@dataclass
class Copy:
    generation: int
    running: bool
    injected: bool  # on files of its own: no lease fences it
    serial: int = 0


@dataclass
class Episode:
    """A stretch of time during which a VM runs on several answering hosts."""

    copies: set[int]  # every copy that ran meanwhile, by serial
    incidents: int = 0
    injected: bool = False  # an injected copy opened or widened it
    ended_by_refresh: bool = False


@dataclass
class World:
    copies: dict[str, dict[str, Copy]] = field(default_factory=lambda: {h: {} for h in HOSTS})
    up: set[str] = field(default_factory=lambda: set(HOSTS))
    lease: dict[str, int] = field(default_factory=dict)  # the generation on storage
    recorded: dict[str, tuple[str | None, int]] = field(default_factory=dict)  # the manager's record
    reports: dict[str, dict[str, int]] = field(default_factory=dict)  # the refresh service's
    writes: dict[str, int] = field(default_factory=dict)  # job writes of each VM's record
    report_writes: dict[str, dict[str, int]] = field(default_factory=dict)  # those each report saw

    def active(self, vm: str) -> dict[str, int]:
        return {h: c.generation for h, c in self.running(vm).items()}

    def running(self, vm: str) -> dict[str, Copy]:
        return {h: c for h in sorted(self.up) if (c := self.copies[h].get(vm)) is not None and c.running}


class DuplicateHistories(RuleBasedStateMachine):
    """Refreshes, live migrations, failovers, hosts coming back and injected copies in
    any order; the refresh and the resolver are modelled on the pure decision."""

    def __init__(self) -> None:
        super().__init__()
        self.w = World()
        self.serial = 0
        self.episodes: dict[str, Episode] = {}
        self.closed: list[Episode] = []
        self.injected_now: str | None = None
        self.refreshing = False  # the rule under way is a refresh
        for host in HOSTS:  # the manager refreshes every host when it starts
            self._refresh(host)
        # Then the VMs are created, after the hosts' latest reports.
        for vm, host in zip(VMS, HOSTS, strict=False):
            self.w.copies[host][vm] = self._copy(1, injected=False)
            self.w.lease[vm] = 1
            self._record(vm, host, 1)

    def _record(self, vm: str, host: str, generation: int) -> None:
        """A job (create, migration, failover) or the resolver writes the VM's record."""
        self.w.recorded[vm] = (host, generation)
        self.w.writes[vm] = self.w.writes.get(vm, 0) + 1

    def _copy(self, generation: int, injected: bool) -> Copy:
        self.serial += 1
        return Copy(generation, True, injected, self.serial)

    # --- the services, modelled ------------------------------------------------------

    def _refresh(self, host: str) -> None:
        w = self.w
        if host not in w.up:
            w.reports.pop(host, None)  # the refresh fails: what it runs is unknown
            w.report_writes.pop(host, None)
            return
        w.reports[host] = {vm: c.generation for vm, c in w.copies[host].items() if c.running}
        w.report_writes[host] = dict(w.writes)
        recorded = {vm: rec[0] for vm, rec in w.recorded.items()}
        duplicates = find_duplicates(w.reports, recorded, involving=host)
        losing = {d.vm_id for d in duplicates if host in d.stop}
        here = [
            reported(vm, VmState.RUNNING if c.running else VmState.STOPPED, c.generation)
            for vm, c in w.copies[host].items()
        ]
        records = {vm: record(vm, rec_host, rec_gen) for vm, (rec_host, rec_gen) in w.recorded.items()}
        unconfirmed = {
            vm
            for vm, (rec_host, _) in w.recorded.items()
            if rec_host not in (None, host)
            and w.report_writes.get(rec_host, {}).get(vm, -1) != w.writes.get(vm, 0)
        }
        held = losing | held_elsewhere(host, here, records, w.reports, unconfirmed)
        for vm, copy in w.copies[host].items():  # reconcile, with the stale rule
            if vm not in w.recorded:
                continue
            rec_host, rec_gen = w.recorded[vm]
            if vm in held or (rec_host not in (None, host) and copy.generation < rec_gen):
                continue
            w.recorded[vm] = (host, max(rec_gen, copy.generation))
        for dup in duplicates:
            self._resolve(dup)

    def _resolve(self, dup: Duplicate) -> None:
        w = self.w
        vm = dup.vm_id
        rec_host = w.recorded[vm][0]
        asked = {*dup.hosts, *([rec_host] if rec_host else []), *w.reports}
        seen = {h: {vm: g} for h, g in w.active(vm).items() if h in asked}
        fresh = find_duplicates(seen, {vm: rec_host})
        if not fresh:
            return  # a stale report: the VM no longer runs twice
        [decision] = fresh
        # Newest of every running copy the manager hears of: a host that did not answer
        # its last refresh is not asked (it costs a timeout) unless the VM is recorded there.
        heard = {h: g for h, g in w.active(vm).items() if h in w.reports or h == rec_host}
        newest = max(heard.values())
        assert dict(decision.generations)[decision.keep] == newest, "kept a copy older than another"
        # A tie between the copy holding the VM's lease and one on files of its own:
        # the VM's own copy stays.
        tied = [w.copies[h][vm] for h, g in decision.generations if g == newest]
        if any(not c.injected and c.generation == w.lease[vm] for c in tied):
            assert not w.copies[decision.keep][vm].injected, "kept an injected copy over the VM's own"
        for loser in decision.stop:
            del w.copies[loser][vm]
            w.reports.get(loser, {}).pop(vm, None)
        self._record(vm, decision.keep, max(w.recorded[vm][1], newest))
        episode = self.episodes.get(vm)
        assert episode is not None, f"an incident about {vm}, which ran once"
        episode.incidents += 1

    # --- what happens to the cluster -------------------------------------------------

    @rule(host=st.sampled_from(HOSTS))
    def refresh(self, host: str) -> None:
        self.refreshing = True
        self._refresh(host)

    @rule()
    def refresh_all(self) -> None:
        self.refreshing = True
        before = {vm: self.w.active(vm) for vm in VMS}
        for host in HOSTS:
            self._refresh(host)
        self._track()
        for vm in VMS:
            after = self.w.active(vm)
            assert len(after) <= 1, f"{vm} runs on {after} after a full refresh"
            if before[vm]:
                assert list(after.values()) == [max(before[vm].values())], (vm, before[vm], after)

    @rule(vm=st.sampled_from(VMS), destination=st.sampled_from(HOSTS))
    def live_migrate(self, vm: str, destination: str) -> None:
        w = self.w
        source = w.recorded[vm][0]
        copy = w.copies[source].get(vm) if source else None
        if source is None or source not in w.up or destination not in w.up or vm in w.copies[destination]:
            return
        if copy is None or not copy.running or copy.generation != w.lease[vm]:
            return
        w.lease[vm] += 1
        del w.copies[source][vm]
        w.copies[destination][vm] = self._copy(w.lease[vm], injected=False)
        self._record(vm, destination, w.lease[vm])

    @rule(host=st.sampled_from(HOSTS))
    def fail_over(self, host: str) -> None:
        """The host fails; its HA VMs restart elsewhere with a newer lease. Its copies
        stay where they are, frozen, until it comes back."""
        w = self.w
        if host not in w.up:
            return
        others = sorted(w.up - {host})
        # A VM no node can take waits, held by its failover (which the refresh leaves
        # alone): not modelled, so such a failure does not happen here.
        if any(w.recorded[vm][0] == host and all(vm in w.copies[h] for h in others) for vm in VMS):
            return
        w.up.discard(host)
        for vm in VMS:
            if w.recorded[vm][0] != host:
                continue
            target = next(h for h in others if vm not in w.copies[h])
            w.lease[vm] += 1
            w.copies[target][vm] = self._copy(w.lease[vm], injected=False)
            self._record(vm, target, w.lease[vm])

    @rule(host=st.sampled_from(HOSTS), isolation_applied=st.booleans())
    def come_back(self, host: str, isolation_applied: bool) -> None:
        if host in self.w.up:
            return
        self.w.up.add(host)
        if isolation_applied:
            for copy in self.w.copies[host].values():
                copy.running = False

    @rule(host=st.sampled_from(HOSTS))
    def fenced_copies_stop(self, host: str) -> None:
        """Copies on the VM's own files that lost the lease stop at their next write."""
        w = self.w
        for vm, copy in list(w.copies[host].items()):
            if not copy.injected and copy.generation < w.lease[vm]:
                del w.copies[host][vm]

    @rule(vm=st.sampled_from(VMS), host=st.sampled_from(HOSTS), start=st.booleans())
    def inject(self, vm: str, host: str, start: bool) -> None:
        """A second copy created through the agent's own API, on files of its own: its
        lease is a first one, the same generation as the VM's or an older one. Started
        at once, or left at rest for a while."""
        w = self.w
        if host not in w.up or vm in w.copies[host]:
            return
        w.copies[host][vm] = self._copy(1, injected=True)
        w.copies[host][vm].running = start
        self.injected_now = vm

    @rule(vm=st.sampled_from(VMS), host=st.sampled_from(HOSTS))
    def start_injected(self, vm: str, host: str) -> None:
        copy = self.w.copies[host].get(vm)
        if host in self.w.up and copy is not None and copy.injected and not copy.running:
            copy.running = True
            self.injected_now = vm

    @rule(vm=st.sampled_from(VMS), host=st.sampled_from(HOSTS))
    def take_over(self, vm: str, host: str) -> None:
        """A copy started through the agent's API that takes the VM's files over with
        a newer lease, behind the manager's back: the recorded copy is fenced, but
        runs until its next write."""
        w = self.w
        if host not in w.up or vm in w.copies[host]:
            return
        w.lease[vm] += 1
        w.copies[host][vm] = self._copy(w.lease[vm], injected=False)
        self.injected_now = vm

    # --- what must hold --------------------------------------------------------------

    def _track(self) -> None:
        """Open an episode when a VM starts running twice; close it when it stops."""
        for vm in VMS:
            running = self.w.running(vm)
            episode = self.episodes.get(vm)
            if len(running) >= 2:
                if episode is None:
                    episode = self.episodes[vm] = Episode(set())
                episode.copies |= {c.serial for c in running.values()}
                episode.injected |= self.injected_now == vm
            elif episode is not None:
                episode.ended_by_refresh = self.refreshing
                self.closed.append(self.episodes.pop(vm))
        self.injected_now = None
        self.refreshing = False

    @invariant()
    def incidents_match_duplicates(self) -> None:
        self._track()
        for episode in self.closed:
            # Each incident stops at least one copy (every copy the resolver sees but
            # the kept one); a copy whose host's report was older, or that joined
            # later, may take one more. Two copies (an injected duplicate of a VM that
            # ran once): exactly one incident if a refresh ended it, none if a fault did.
            if episode.ended_by_refresh:
                assert 1 <= episode.incidents <= len(episode.copies) - 1, episode
            else:
                assert episode.incidents <= len(episode.copies) - 2, episode
        self.closed.clear()


TestDuplicateHistories = DuplicateHistories.TestCase
TestDuplicateHistories.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)


def test_an_injected_duplicate_is_one_incident_at_the_next_full_refresh() -> None:
    machine = DuplicateHistories()
    # Started beside a VM created after h1's latest report: h3's report comes first and
    # must not take the record, so the same generation's tie keeps h1, the VM's own.
    machine.inject("a", "h3", start=True)
    machine.incidents_match_duplicates()
    machine.refresh("h3")
    machine.incidents_match_duplicates()
    assert machine.w.recorded["a"] == ("h1", 1)
    machine.refresh("h1")
    machine.incidents_match_duplicates()
    assert machine.w.active("a") == {"h1": 1} and not machine.episodes
    # Created at rest first: its report must not move the VM's record to h2.
    machine.inject("a", "h2", start=False)
    machine.refresh_all()
    assert machine.w.recorded["a"] == ("h1", 1)
    machine.start_injected("a", "h2")
    machine.incidents_match_duplicates()
    episode = machine.episodes["a"]
    machine.refresh_all()
    assert episode.incidents == 1 and machine.w.active("a") == {"h1": 1}


# ------------------------------------------- the services in process, on the real agents

DEFAULT = Path(__file__).resolve().parents[2] / "havm" / "cli" / "default_topology.yaml"
CSV = StorageLocation(StorageKind.CSV, "Volume1")
LUN1 = StorageLocation(StorageKind.LUN, "lun1")
LOCAL_C = StorageLocation(StorageKind.LOCAL_DISK, "C")


class Cluster:
    """The manager's app over the real agents of the default topology, on virtual time.

    A VM's own copy runs on Volume1. A second copy is made through the agent's own API
    on files of its own (the host's local disk, or a LUN), so no lease fences either
    copy: both run until the manager stops one. The power operations and deletions the
    agents carry out are counted at their VmHost."""

    def __init__(self, sim: SimAgents) -> None:
        self.sim = sim
        self.agents = sim.client()
        self.store = MemoryStore()
        loop = asyncio.get_running_loop()
        self.app = ManagerApp(self.store, self.agents, Settings(), clock=lambda: NOW, monotonic=loop.time)
        self.app.load(sim.topology)
        self.calls: list[tuple[str, str, str]] = []
        for host in sim.topology.hosts:
            vm_host = sim.vm_host(host.name)
            intercept(vm_host, "operate", self._counting_operations(host.name))
            intercept(vm_host, "delete_vm", self._counting_deletions(host.name))

    @classmethod
    async def booted(cls, tmp_path: Path) -> Cluster:
        topology = parse_topology(yaml.safe_load(DEFAULT.read_text()))
        sim = SimAgents(asyncio.get_running_loop(), topology, tmp_path)  # type: ignore[arg-type]
        await sim.start()
        return cls(sim)

    def _counting_operations(self, host: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def wrap(operate: Callable[..., Any]) -> Callable[..., Any]:
            async def counted(vm_id: str, operation: Operation) -> Any:
                self.calls.append((host, vm_id, operation.value))
                return await operate(vm_id, operation)

            return counted

        return wrap

    def _counting_deletions(self, host: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def wrap(delete_vm: Callable[..., Any]) -> Callable[..., Any]:
            async def counted(vm_id: str) -> Any:
                self.calls.append((host, vm_id, "delete"))
                return await delete_vm(vm_id)

            return counted

        return wrap

    async def copy(
        self, host: str, vm: VmRecord, generation: int, storage: StorageLocation, start: bool = True
    ) -> None:
        """A copy of `vm` on `host` holding lease `generation`, made through the agent's API.

        The first generation is a plain creation; a later one is a take-over of files
        that another node of the cluster created at rest on that shared storage (its
        copy there is then stale, and that agent lets it go)."""
        address = self.sim.address(host)
        spec = replace(vm, storage=storage)
        if generation == 1:
            await self.agents.create_vm(host, address, spec)
        else:
            creator = next(n for n in ("node2", "node3") if n != host)
            await self.agents.create_vm(creator, self.sim.address(creator), spec)
            await self.agents.create_vm(host, address, spec, take_over=True, lease_generation=generation)
        assert self.sim.vm_host(host).get_vm(vm.id).lease_generation == generation
        if start:
            await self.start(host, vm.id)

    async def start(self, host: str, vm_id: str) -> None:
        await self.agents.operate_vm(host, self.sim.address(host), vm_id, VmOperation.START)

    async def create(self, name: str, host: str, generation: int = 1) -> VmRecord:
        """A highly available VM on Volume1, running on `host`, recorded by the manager."""
        vm = VmRecord(
            id=f"id-{name}", name=name, host=host, state=VmState.RUNNING, highly_available=True,
            memory_mb=1024, cpus=1, disk_gb=20, storage=CSV, lease_generation=generation,
        )  # fmt: skip
        await self.copy(host, vm, generation, CSV)
        self.app.vms.record(vm)
        return vm

    def running(self, vm_id: str) -> dict[str, int]:
        """Where the agents run the VM now, and the lease generation each copy holds
        (a host whose management path is cut still runs its copies)."""
        found: dict[str, int] = {}
        for host in sorted(self.sim.cluster.hosts):
            for view in self.sim.vm_host(host).list_vms():
                if view.spec.id == vm_id and view.state is PowerState.RUNNING:
                    found[host] = view.lease_generation
        return found

    def vm(self, name: str) -> VmRecord:
        record = self.store.get_vm_by_name(name)
        assert record is not None
        return record

    def incidents(self) -> list[str]:
        return [e.detail for e in self.app.events.recent(1000) if e.kind == "incident"]


async def booted(tmp_path: Path) -> Cluster:
    c = await Cluster.booted(tmp_path)
    await c.app.refresher.refresh_all()
    return c


@on_virtual_time
async def test_a_copy_started_on_another_node_is_stopped_and_the_incident_recorded(tmp_path: Path) -> None:
    cluster = await booted(tmp_path)
    vm = await cluster.create("web1", "node1")
    await cluster.app.refresher.refresh_all()
    await cluster.copy("node2", vm, 1, LOCAL_C)
    # node2 alone first: its copy ties with node1's and must not move the record there.
    await cluster.app.refresher.refresh(["node2"])
    assert cluster.running(vm.id) == {"node1": 1}
    assert {("node2", vm.id, "turn_off"), ("node2", vm.id, "delete")} <= set(cluster.calls)
    assert vm.id not in {v.spec.id for v in cluster.sim.vm_host("node2").list_vms()}
    web1 = cluster.vm("web1")
    assert web1.host == "node1" and web1.state is VmState.RUNNING and web1.storage == CSV
    assert web1.incident is not None and web1.incident.kind is IncidentKind.DUPLICATE_COPY
    assert web1.incident.hosts == ("node1", "node2") and web1.incident.time == NOW
    [event] = [e for e in cluster.app.events.recent(1000) if e.kind == "incident"]
    assert event.host == "node1" and event.vm == "web1" and "node2" in event.detail
    assert "recorded there" in event.detail
    assert "id-web1" not in cluster.app.refresher.reports["node2"]
    # Resolved once: later refreshes find nothing more.
    await cluster.app.refresher.refresh_all()
    await cluster.app.refresher.refresh_all()
    assert len(cluster.incidents()) == 1


@pytest.mark.parametrize("reported_first", [True, False])
@on_virtual_time
async def test_a_copy_beside_the_vm_never_takes_its_record(tmp_path: Path, reported_first: bool) -> None:
    """Created at rest beside a VM its host reported, or running beside one created
    after its host's latest report: the same lease, and the record stays."""
    cluster = await booted(tmp_path)
    vm = await cluster.create("web4", "node1")
    if reported_first:
        await cluster.app.refresher.refresh_all()
    await cluster.copy("node2", vm, 1, LOCAL_C, start=not reported_first)
    await cluster.app.refresher.refresh(["node2"])
    web4 = cluster.vm("web4")
    assert (web4.host, web4.state, web4.storage) == ("node1", VmState.RUNNING, CSV)
    if reported_first:
        await cluster.start("node2", vm.id)  # behind the manager's back
    await cluster.app.refresher.refresh(["node2" if reported_first else "node1"])
    assert cluster.running(vm.id) == {"node1": 1}
    assert cluster.vm("web4").incident.hosts == ("node1", "node2")  # type: ignore[union-attr]


@on_virtual_time
async def test_the_newest_lease_wins_even_against_the_recorded_host(tmp_path: Path) -> None:
    cluster = await booted(tmp_path)
    vm = await cluster.create("db1", "node1", generation=2)
    await cluster.copy("node3", vm, 1, LOCAL_C)  # an older copy
    await cluster.app.refresher.refresh_all()
    assert cluster.running(vm.id) == {"node1": 2}
    assert cluster.vm("db1").incident.hosts == ("node1", "node3")  # type: ignore[union-attr]
    # A copy holding a newer lease than the record's: it is the one that may write.
    await cluster.copy("node4", vm, 3, LUN1)
    await cluster.app.refresher.refresh_all()
    assert cluster.running(vm.id) == {"node4": 3}
    db1 = cluster.vm("db1")
    assert (db1.host, db1.lease_generation, db1.state) == ("node4", 3, VmState.RUNNING)
    assert db1.incident is not None and db1.incident.hosts == ("node4", "node1")
    assert "newest lease" in db1.incident.detail
    assert len(cluster.incidents()) == 2


@on_virtual_time
async def test_a_vm_a_job_or_a_failover_works_on_is_left_alone(tmp_path: Path) -> None:
    cluster = await booted(tmp_path)
    vm = await cluster.create("app1", "node1")
    await cluster.copy("node2", vm, 1, LOCAL_C)
    for claim in Claim:  # a migration moves it, a failover restarts it, a job holds it
        with cluster.app.claims.held(vm.id, claim):
            await cluster.app.refresher.refresh_all()
        assert cluster.running(vm.id) == {"node1": 1, "node2": 1} and not cluster.incidents()
    async with cluster.app.vms.lock(vm.id):  # a job holds the VM's lock
        await cluster.app.refresher.refresh_all()
    assert len(cluster.running(vm.id)) == 2 and not cluster.incidents()
    await cluster.app.refresher.refresh_all()
    assert cluster.running(vm.id) == {"node1": 1} and len(cluster.incidents()) == 1


@on_virtual_time
async def test_a_stale_report_stops_nothing_and_a_silent_host_is_forgotten(tmp_path: Path) -> None:
    cluster = await booted(tmp_path)
    vm = await cluster.create("web2", "node1")
    await cluster.app.refresher.refresh_all()
    # node2's last report says it runs web2, but it no longer does (it moved away).
    cluster.app.refresher.reports["node2"] = {vm.id: 1}
    await cluster.app.refresher.refresh(["node1"])
    assert cluster.running(vm.id) == {"node1": 1} and not cluster.incidents()
    assert not any(call[0] == "node2" for call in cluster.calls)
    # A duplicate on node3, which then stops answering on its management path.
    await cluster.copy("node3", vm, 1, LOCAL_C)
    cluster.sim.isolate("node3", "management")
    await cluster.app.refresher.refresh(["node3"])
    assert "node3" not in cluster.app.refresher.reports
    # Its copy, known from an earlier report, stays: the resolver cannot ask node3.
    cluster.app.refresher.reports["node3"] = {vm.id: 1}
    await cluster.app.refresher.refresh(["node1"])
    assert cluster.running(vm.id) == {"node1": 1, "node3": 1} and not cluster.incidents()
    assert not any(call[0] == "node3" and call[2] != "start" for call in cluster.calls)


@on_virtual_time
async def test_without_a_resolver_the_refresh_looks_for_nothing(tmp_path: Path) -> None:
    c = await Cluster.booted(tmp_path)
    # As current callers build it: no resolver argument.
    refresher = RefreshService(c.store, c.agents, Settings(), lambda: NOW, VmClaims(), dict)
    vm = await c.create("web3", "node1")
    await c.copy("node2", vm, 1, LOCAL_C)
    await refresher.refresh_all()
    assert len(c.running(vm.id)) == 2 and not c.incidents()
    assert not any(call[2] in ("turn_off", "delete") for call in c.calls)

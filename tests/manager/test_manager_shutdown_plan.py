"""Host shutdown: the plan that empties a host (shutdown), the host states `stopping` and
`stopped` through refreshes (inventory) and heartbeats (detector), and their edges (states)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from havm.contract.hosts import CpuSpec
from manager.core.detector import Action, FailureDetector, Verdict
from manager.core.errors import FailedPreconditionError, IllegalTransitionError
from manager.core.inventory import apply_inventory, apply_refresh_failure
from manager.core.model import (
    GIB,
    DiskInfo,
    FailoverPolicy,
    HostRecord,
    Inventory,
    NetworkInfo,
    StorageKind,
    StorageLocation,
    VmRecord,
    VolumeInfo,
)
from manager.core.placement import HostCapacity, PlacementSnapshot, StorageRoom
from manager.core.profiles import profile_capabilities
from manager.core.shutdown import ShutdownAction, ShutdownStep, StepKind, check_can_shut_down, plan_shutdown
from manager.core.states import HOST_TRANSITIONS, HostState, VmState, change_host_state

T0 = datetime(2026, 11, 25, 17, 0, tzinfo=UTC)
CSV = StorageLocation(StorageKind.CSV, "Volume1")
LUN1 = StorageLocation(StorageKind.LUN, "lun1")
CPU = CpuSpec("GenuineIntel", "Intel Xeon X5570", ("sse4_2",), 8, 2933)
SAVE, SHUTDOWN, LIVE = ShutdownAction.SAVE, ShutdownAction.SHUTDOWN, ShutdownAction.LIVE


# --- builders ------------------------------------------------------------------------


def host(
    name: str = "node1",
    state: HostState = HostState.OK,
    cluster: str | None = "cluster1",
    profile: str = "hyperv-2008r2",
    **kw: object,
) -> HostRecord:
    fields: dict = dict(
        name=name,
        cluster=cluster,
        profile=profile,
        address="127.0.0.1:5000",
        cpu=CPU,
        memory_mb=32768,
        host_reserve_mb=2048,
        memory_free_mb=30000,
        disks=(DiskInfo("C", 500 * GIB, 400 * GIB),),
        networks=(NetworkInfo("External", "virtual_network", "nic", 0),),
        volumes=(VolumeInfo("Volume1", StorageKind.CSV, 2048 * GIB, 2000 * GIB),),
        state=state,
        state_reason="",
        last_refresh=T0,
        boot_id="boot-1",
    )
    fields.update(kw)
    return HostRecord(**fields)


def room(
    name: str,
    free: int = 16000,
    state: HostState = HostState.OK,
    cluster: str | None = "cluster1",
    **kw: object,
) -> HostCapacity:
    fields: dict = dict(
        name=name,
        cluster=cluster,
        state=state,
        usable_memory_mb=30720,
        memory_free_mb=free,
        cores=8,
        running_vcpus=0,
        storage=(StorageRoom("Volume1", StorageKind.CSV, 1000),) if cluster else (),
        networks=("External",),
    )
    fields.update(kw)
    return HostCapacity(**fields)


def vm(
    name: str, state: VmState = VmState.RUNNING, host_name: str | None = "node1", **kw: object
) -> VmRecord:
    fields: dict = dict(
        id=f"id-{name}",
        name=name,
        host=host_name,
        state=state,
        highly_available=True,
        memory_mb=2048,
        cpus=1,
        disk_gb=20,
        storage=CSV,
        networks=("External",),
    )
    fields.update(kw)
    return VmRecord(**fields)


def cluster(*others: HostCapacity, me: HostCapacity | None = None) -> PlacementSnapshot:
    """The shutting host (node1, with no room of its own) and the other nodes."""
    return PlacementSnapshot(((me or room("node1", free=0)),) + others)


def plan(
    vms: list[VmRecord],
    action: ShutdownAction = SAVE,
    snapshot: PlacementSnapshot | None = None,
    shutting: HostRecord | None = None,
) -> tuple[tuple[ShutdownStep, ...], tuple[tuple[str, str], ...]]:
    snapshot = snapshot or cluster(room("node2"), room("node3", free=8000))
    return plan_shutdown(shutting or host(), vms, action, snapshot)


def kinds(steps: tuple[ShutdownStep, ...]) -> dict[str, tuple[StepKind, str]]:
    return {s.vm_name: (s.kind, s.target) for s in steps}


# --- check_can_shut_down ----------------------------------------------------------------


@pytest.mark.parametrize("state", [HostState.OK, HostState.MAINTENANCE])
def test_an_ok_or_maintenance_host_may_shut_down(state: HostState) -> None:
    check_can_shut_down(host(state=state))


@pytest.mark.parametrize("state", sorted(set(HostState) - {HostState.OK, HostState.MAINTENANCE}, key=str))
def test_any_other_host_state_is_refused_naming_it(state: HostState) -> None:
    with pytest.raises(FailedPreconditionError) as info:
        check_can_shut_down(host("node7", state=state))
    assert info.value.code == "FAILED_PRECONDITION"
    assert info.value.message == (
        f"host node7 is {state.value}: only a host that is ok or in maintenance can be shut down"
    )


# --- plan_shutdown: what each action does ----------------------------------------------


def test_save_quick_migrates_running_and_paused_ha_vms_to_another_node() -> None:
    steps, stuck = plan([vm("a"), vm("b", VmState.PAUSED)], SAVE)
    assert stuck == ()
    assert {s.vm_name: s.kind for s in steps} == {"a": StepKind.QUICK_MIGRATE, "b": StepKind.QUICK_MIGRATE}
    assert all(s.target in ("node2", "node3") for s in steps)
    assert steps[0] == ShutdownStep("id-a", "a", StepKind.QUICK_MIGRATE, "node2")


def test_live_on_a_live_capable_profile_live_migrates_running_and_quick_migrates_paused() -> None:
    steps, stuck = plan([vm("a"), vm("b", VmState.PAUSED)], LIVE)
    assert stuck == ()
    assert {s.vm_name: s.kind for s in steps} == {"a": StepKind.LIVE_MIGRATE, "b": StepKind.QUICK_MIGRATE}


@pytest.mark.parametrize("profile", ["hyperv-2008", "esx"])
def test_live_follows_the_shutting_host_s_profile(profile: str) -> None:
    steps, _ = plan([vm("a")], LIVE, shutting=host(profile=profile))
    live = profile_capabilities(profile).live_migration
    expected = StepKind.LIVE_MIGRATE if live else StepKind.QUICK_MIGRATE
    assert [s.kind for s in steps] == [expected]


def test_live_to_a_target_that_cannot_live_migrate_quick_migrates() -> None:
    others = cluster(room("node2"), room("node3"))
    to_both, _ = plan_shutdown(host(), [vm("a"), vm("b")], LIVE, others)
    assert {s.kind for s in to_both} == {StepKind.LIVE_MIGRATE}
    steps, stuck = plan_shutdown(host(), [vm("a"), vm("b")], LIVE, others, live_hosts={"node1", "node3"})
    assert stuck == ()
    kinds = {s.target: s.kind for s in steps}
    assert kinds == {"node2": StepKind.QUICK_MIGRATE, "node3": StepKind.LIVE_MIGRATE}, steps


def test_live_on_a_profile_that_cannot_live_migrate_quick_migrates() -> None:
    steps, stuck = plan([vm("a"), vm("b", VmState.PAUSED)], LIVE, shutting=host(profile="hyperv-2008"))
    assert stuck == ()
    assert {s.vm_name: s.kind for s in steps} == {"a": StepKind.QUICK_MIGRATE, "b": StepKind.QUICK_MIGRATE}


def test_shutdown_shuts_running_ha_vms_down_and_moves_them() -> None:
    steps, stuck = plan([vm("a"), vm("b", VmState.PAUSED)], SHUTDOWN)
    assert stuck == ()
    # A paused guest cannot shut itself down: it is saved and restored instead.
    assert {s.vm_name: s.kind for s in steps} == {
        "a": StepKind.SHUT_DOWN_AND_MOVE,
        "b": StepKind.QUICK_MIGRATE,
    }
    assert all(s.target for s in steps)


@pytest.mark.parametrize("action", list(ShutdownAction))
@pytest.mark.parametrize("state", [VmState.STOPPED, VmState.SAVED])
def test_ha_vms_at_rest_quick_migrate_whatever_the_action(action: ShutdownAction, state: VmState) -> None:
    steps, stuck = plan([vm("a", state)], action)
    assert stuck == ()
    assert [(s.kind, bool(s.target)) for s in steps] == [(StepKind.QUICK_MIGRATE, True)]


@pytest.mark.parametrize("state", [VmState.STOPPED, VmState.SAVED])
def test_ha_vms_at_rest_need_no_memory_on_the_target(state: VmState) -> None:
    snapshot = cluster(room("node2", free=0))
    steps, stuck = plan([vm("big", state, memory_mb=24000)], SAVE, snapshot)
    assert stuck == ()
    assert kinds(steps) == {"big": (StepKind.QUICK_MIGRATE, "node2")}


def test_vms_at_rest_do_not_use_up_the_room_of_running_ones() -> None:
    snapshot = cluster(room("node2", free=3000))
    vms = [
        vm("rest1", VmState.STOPPED, memory_mb=2500),
        vm("rest2", VmState.SAVED, memory_mb=2900),
        vm("run"),
    ]
    steps, stuck = plan(vms, SAVE, snapshot)
    assert stuck == ()
    assert {s.target for s in steps} == {"node2"} and len(steps) == 3


@pytest.mark.parametrize("action", list(ShutdownAction))
def test_vms_that_are_not_ha_stay_running_ones_shut_down_paused_ones_turned_off(
    action: ShutdownAction,
) -> None:
    vms = [
        vm("run", highly_available=False),
        vm("frozen", VmState.PAUSED, highly_available=False),
        vm("off", VmState.STOPPED, highly_available=False),
        vm("saved", VmState.SAVED, highly_available=False),
    ]
    steps, stuck = plan(vms, action)
    assert stuck == ()
    assert kinds(steps) == {"run": (StepKind.SHUT_DOWN, ""), "frozen": (StepKind.TURN_OFF, "")}


def test_vms_of_a_standalone_host_are_shut_down_where_they_are() -> None:
    standalone = host("solo", cluster=None)
    vms = [vm("a", host_name="solo"), vm("b", VmState.PAUSED, host_name="solo", highly_available=False)]
    snapshot = PlacementSnapshot((room("solo", cluster=None), room("node2")))
    steps, stuck = plan_shutdown(standalone, vms, LIVE, snapshot)
    assert stuck == ()
    assert kinds(steps) == {"a": (StepKind.SHUT_DOWN, ""), "b": (StepKind.TURN_OFF, "")}


def test_only_the_vms_of_the_shutting_host_are_planned() -> None:
    steps, stuck = plan([vm("mine"), vm("theirs", host_name="node2"), vm("nowhere", host_name=None)])
    assert stuck == ()
    assert [s.vm_name for s in steps] == ["mine"]


def test_an_empty_host_has_an_empty_plan() -> None:
    assert plan([]) == ((), ())


# --- plan_shutdown: what blocks it ----------------------------------------------------


@pytest.mark.parametrize("state", [VmState.MIGRATING, VmState.SAVING, VmState.STARTING, VmState.CREATING])
def test_a_vm_in_transition_is_stuck(state: VmState) -> None:
    steps, stuck = plan([vm("busy", state), vm("calm")])
    assert stuck == (("busy", f"it is {state.value}: wait until that ends"),)
    assert [s.vm_name for s in steps] == ["calm"]


def test_a_vm_that_is_not_ha_in_transition_is_stuck_too() -> None:
    _, stuck = plan([vm("busy", VmState.SAVING, highly_available=False)])
    assert stuck == (("busy", "it is saving: wait until that ends"),)


@pytest.mark.parametrize(
    ("state", "ha"),
    [
        (VmState.RUNNING, True),  # a live migration waiting for a slot
        (VmState.SAVED, True),  # a quick migration between its save and its restore
        (VmState.STOPPED, True),  # an at-rest move under way
        (VmState.RUNNING, False),  # a storage migration of a VM that is not HA
    ],
)
def test_a_vm_whose_migration_is_queued_or_under_way_is_stuck(state: VmState, ha: bool) -> None:
    busy = vm("busy", state, highly_available=ha, migration_id="m-1")
    steps, stuck = plan([busy, vm("calm")])
    assert [s.vm_name for s in steps] == ["calm"]
    assert [name for name, _ in stuck] == ["busy"]
    assert "migrat" in stuck[0][1]


@pytest.mark.parametrize("state", [VmState.FAILED, VmState.MISSING, VmState.UNKNOWN, VmState.WAITING])
def test_vms_of_which_nothing_runs_here_are_left_alone(state: VmState) -> None:
    assert plan([vm("ghost", state)]) == ((), ())


def test_an_ha_vm_in_a_cluster_with_no_other_node_is_stuck() -> None:
    _, stuck = plan([vm("a")], snapshot=cluster())
    assert stuck == (("a", "its cluster has no other node"),)


def test_other_clusters_do_not_count() -> None:
    snapshot = cluster(room("other1", cluster="cluster2"), room("solo", cluster=None))
    _, stuck = plan([vm("a")], snapshot=snapshot)
    assert stuck == (("a", "its cluster has no other node"),)


def test_an_ha_vm_no_other_node_can_take_is_stuck_with_the_reasons() -> None:
    snapshot = cluster(room("node2", free=1000), room("node3", state=HostState.MAINTENANCE))
    steps, stuck = plan([vm("a", memory_mb=4096), vm("small", memory_mb=512)], SAVE, snapshot)
    assert stuck == (("a", "node2 has 1000 MB free, needs 4096 MB; node3 is in maintenance mode"),)
    # The plan is reported whole; the service refuses it because something is stuck.
    assert kinds(steps) == {"small": (StepKind.QUICK_MIGRATE, "node2")}


def test_a_node_that_does_not_see_the_vm_s_lun_cannot_take_it() -> None:
    lun_room = StorageRoom("lun1", StorageKind.LUN, 100, ("a",))
    snapshot = cluster(
        room("node2"), room("node3", storage=(lun_room,)), me=room("node1", free=0, storage=(lun_room,))
    )
    steps, stuck = plan([vm("a", storage=LUN1)], SAVE, snapshot)
    assert stuck == ()
    # The VM's own use of the LUN does not block it.
    assert kinds(steps) == {"a": (StepKind.QUICK_MIGRATE, "node3")}


def test_a_lun_another_vm_uses_blocks_the_move() -> None:
    lun_room = StorageRoom("lun1", StorageKind.LUN, 100, ("other",))
    snapshot = cluster(room("node2", storage=(lun_room,)))
    _, stuck = plan([vm("a", storage=LUN1)], SAVE, snapshot)
    assert stuck == (("a", "node2 sees LUN lun1 but VM other uses it"),)


def test_a_node_without_the_vm_s_network_cannot_take_it() -> None:
    snapshot = cluster(room("node2", networks=()), room("node3", free=3000))
    steps, stuck = plan([vm("a")], SAVE, snapshot)
    assert stuck == ()
    assert kinds(steps) == {"a": (StepKind.QUICK_MIGRATE, "node3")}


# --- plan_shutdown: owners and shared room --------------------------------------------


def test_the_first_preferred_owner_is_taken_even_if_another_node_has_more_room() -> None:
    owned = vm("a", policy=FailoverPolicy(preferred_owners=("node3", "node2")))
    snapshot = cluster(room("node2", free=30000), room("node3", free=3000))
    steps, _ = plan([owned], LIVE, snapshot)
    assert kinds(steps) == {"a": (StepKind.LIVE_MIGRATE, "node3")}


def test_the_shutting_host_is_skipped_among_the_preferred_owners() -> None:
    owned = vm("a", policy=FailoverPolicy(preferred_owners=("node1", "node3")))
    steps, _ = plan([owned], SAVE, cluster(room("node2", free=30000), room("node3", free=3000)))
    assert kinds(steps) == {"a": (StepKind.QUICK_MIGRATE, "node3")}


def test_a_node_that_is_not_a_possible_owner_is_never_a_target() -> None:
    owned = vm("a", memory_mb=4096, policy=FailoverPolicy(possible_owners=("node1", "node3")))
    snapshot = cluster(room("node2", free=30000), room("node3", free=1000))
    steps, stuck = plan([owned], SAVE, snapshot)
    assert steps == ()
    assert stuck == (("a", "node3 has 1000 MB free, needs 4096 MB"),)


def test_a_vm_whose_only_possible_owner_is_the_shutting_host_is_stuck_naming_it() -> None:
    owned = vm("a", policy=FailoverPolicy(possible_owners=("node1",)))
    _, stuck = plan([owned])
    assert stuck == (("a", "none of its possible owners (node1) can be tried"),)


def test_two_big_vms_do_not_count_the_same_free_memory() -> None:
    snapshot = cluster(room("node2", free=10000))
    steps, stuck = plan([vm("big1", memory_mb=6000), vm("big2", memory_mb=6000)], SAVE, snapshot)
    assert kinds(steps) == {"big1": (StepKind.QUICK_MIGRATE, "node2")}
    assert stuck == (("big2", "node2 has 4000 MB free, needs 6000 MB"),)


def test_two_big_vms_spread_over_two_targets() -> None:
    snapshot = cluster(room("node2", free=10000), room("node3", free=7000))
    steps, stuck = plan([vm("big1", memory_mb=6000), vm("big2", memory_mb=6000)], LIVE, snapshot)
    assert stuck == ()
    assert kinds(steps) == {
        "big1": (StepKind.LIVE_MIGRATE, "node2"),
        "big2": (StepKind.LIVE_MIGRATE, "node3"),
    }


def test_the_biggest_vm_is_placed_first() -> None:
    snapshot = cluster(room("node2", free=7000))
    steps, stuck = plan([vm("small", memory_mb=2000), vm("big", memory_mb=6000)], SAVE, snapshot)
    assert [s.vm_name for s in steps] == ["big"]
    assert stuck == (("small", "node2 has 1000 MB free, needs 2000 MB"),)


@settings(max_examples=150, deadline=None)
@given(
    frees=st.lists(st.integers(0, 12000), min_size=0, max_size=4),
    shapes=st.lists(
        st.tuples(
            st.integers(256, 8000),
            st.sampled_from(
                [VmState.RUNNING, VmState.PAUSED, VmState.STOPPED, VmState.SAVED, VmState.SAVING]
            ),
            st.booleans(),
        ),
        max_size=8,
    ),
    action=st.sampled_from(list(ShutdownAction)),
)
def test_every_vm_is_accounted_for_and_no_target_is_overcommitted(
    frees: list[int], shapes: list[tuple[int, VmState, bool]], action: ShutdownAction
) -> None:
    others = [room(f"n{i}", free=f) for i, f in enumerate(frees)]
    vms = [vm(f"v{i}", state, memory_mb=m, highly_available=ha) for i, (m, state, ha) in enumerate(shapes)]
    steps, stuck = plan_shutdown(host(), vms, action, cluster(*others))
    by_name = {v.name: v for v in vms}
    free = {h.name: h.memory_free_mb for h in others}
    used: dict[str, int] = {}
    for step in steps:
        record = by_name[step.vm_name]
        if record.highly_available:
            assert step.target in free
            if record.state in (VmState.RUNNING, VmState.PAUSED):
                used[step.target] = used.get(step.target, 0) + record.memory_mb
        else:
            assert step.target == ""
            assert step.kind is (StepKind.SHUT_DOWN if record.state is VmState.RUNNING else StepKind.TURN_OFF)
    for name, total in used.items():
        assert total <= free[name]
    planned = {s.vm_name for s in steps} | {name for name, _ in stuck}
    expected = {
        v.name
        for v in vms
        if v.highly_available or v.state in (VmState.RUNNING, VmState.PAUSED, VmState.SAVING)
    }
    assert planned == expected
    assert {name for name, _ in stuck} >= {v.name for v in vms if v.state is VmState.SAVING}


# --- inventory: stopping and stopped hosts ---------------------------------------------


def inventory(boot_id: str = "boot-1", free: int = 20000) -> Inventory:
    return Inventory(
        host_name="node1",
        cluster="cluster1",
        profile="hyperv-2008r2",
        cpu=CPU,
        memory_mb=32768,
        memory_free_mb=free,
        disks=(),
        networks=(),
        volumes=(),
        boot_id=boot_id,
        vms=(),
    )


LATER = T0 + timedelta(seconds=30)


def test_a_stopping_host_keeps_its_state_when_it_answers() -> None:
    stopping = host(state=HostState.STOPPING, state_reason="shutting down (save)")
    after = apply_inventory(stopping, inventory(free=12345), LATER)
    assert after.state is HostState.STOPPING
    assert after.state_reason == "shutting down (save)"
    assert after.memory_free_mb == 12345 and after.last_refresh == LATER


def test_a_stopping_host_keeps_its_state_when_a_refresh_fails() -> None:
    stopping = host(state=HostState.STOPPING, state_reason="shutting down (save)")
    after = apply_refresh_failure(stopping, "connection refused", LATER)
    assert after == replace(stopping, last_refresh=LATER)


def test_a_stopped_host_answering_from_the_same_boot_stays_stopped() -> None:
    stopped = host(state=HostState.STOPPED, state_reason="shut down by an operator")
    after = apply_inventory(stopped, inventory("boot-1", free=777), LATER)
    assert after.state is HostState.STOPPED
    assert after.state_reason == "shut down by an operator"
    assert after.boot_id == "boot-1" and after.memory_free_mb == 777 and after.last_refresh == LATER


def test_a_stopped_host_answering_from_a_new_boot_is_ok_again() -> None:
    stopped = host(state=HostState.STOPPED, state_reason="shut down by an operator")
    after = apply_inventory(stopped, inventory("boot-2"), LATER)
    assert after.state is HostState.OK
    assert after.state_reason == ""
    assert after.boot_id == "boot-2"


def test_a_stopped_host_stays_stopped_when_a_refresh_fails() -> None:
    stopped = host(state=HostState.STOPPED, state_reason="shut down by an operator")
    after = apply_refresh_failure(stopped, "connection refused", LATER)
    assert after == replace(stopped, last_refresh=LATER)


def test_an_ok_host_whose_refresh_fails_is_not_responding() -> None:
    after = apply_refresh_failure(host(), "connection refused", LATER)
    assert after.state is HostState.NOT_RESPONDING and after.state_reason == "connection refused"


def test_a_stopped_host_back_and_shut_down_again_takes_the_usual_path() -> None:
    stopped = host(state=HostState.STOPPED)
    back = apply_inventory(stopped, inventory("boot-2"), LATER)
    again = replace(back, state=change_host_state("node1", back.state, HostState.STOPPING))
    assert apply_inventory(again, inventory("boot-2"), LATER).state is HostState.STOPPING
    gone = replace(again, state=change_host_state("node1", again.state, HostState.STOPPED))
    assert apply_inventory(gone, inventory("boot-2"), LATER).state is HostState.STOPPED
    assert apply_inventory(gone, inventory("boot-3"), LATER).state is HostState.OK


# --- detector: stopped hosts ----------------------------------------------------------


def detector(now: float = 0.0) -> FailureDetector:
    d = FailureDetector(("node1", "node2"), heartbeat_interval_s=1.0, threshold=5, now=now)
    d.broker_up(now)
    return d


def beats(d: FailureDetector, host_name: str, start: float, end: float, boot_id: str = "boot-1") -> None:
    t = start
    while t <= end:
        d.beat(host_name, boot_id, t)
        t += 1.0


def for_host(verdicts: list[Verdict], name: str) -> list[tuple[Action, HostState | None]]:
    return [(v.action, v.state) for v in verdicts if v.host == name]


def test_a_stopped_host_whose_heartbeats_arrive_is_refreshed() -> None:
    d = detector()
    beats(d, "node1", 0.0, 10.0, "boot-2")
    beats(d, "node2", 0.0, 10.0)
    verdicts = d.evaluate({"node1": HostState.STOPPED, "node2": HostState.OK}, 10.5)
    assert verdicts == [Verdict("node1", Action.REFRESH, "heartbeats arrive")]


def test_a_silent_stopped_host_gets_no_verdict() -> None:
    d = detector()
    beats(d, "node1", 0.0, 3.0)
    beats(d, "node2", 0.0, 30.0)
    states = {"node1": HostState.STOPPED, "node2": HostState.OK}
    assert d.evaluate(states, 20.0) == []
    assert d.evaluate(states, 300.0) == [
        Verdict("node2", Action.SET_STATE, "no heartbeat for 270.0 s (window 5 s)", HostState.SUSPECT),
        Verdict("node2", Action.PROBE, "no heartbeat for 270.0 s (window 5 s)"),
    ]


def test_a_stopped_host_whose_last_will_arrived_gets_no_verdict() -> None:
    d = detector()
    beats(d, "node1", 0.0, 10.0)
    beats(d, "node2", 0.0, 10.0)
    d.last_will("node1", 10.2)
    assert for_host(d.evaluate({"node1": HostState.STOPPED, "node2": HostState.OK}, 10.5), "node1") == []


def test_a_stopped_host_never_heard_gets_no_verdict() -> None:
    d = detector()
    assert for_host(d.evaluate({"node1": HostState.STOPPED}, 60.0), "node1") == []


def test_a_stopped_host_is_never_probed() -> None:
    d = detector()
    assert d.probe_result("node1", HostState.STOPPED, False, "deadline exceeded", 60.0) == []


# --- host state edges -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (HostState.OK, HostState.STOPPING),
        (HostState.OK, HostState.STOPPED),
        (HostState.MAINTENANCE, HostState.STOPPING),
        (HostState.SUSPECT, HostState.STOPPED),
        (HostState.ISOLATED, HostState.STOPPED),
        (HostState.NOT_RESPONDING, HostState.STOPPED),
        (HostState.STOPPING, HostState.STOPPED),
        (HostState.STOPPING, HostState.OK),
        (HostState.STOPPING, HostState.NOT_RESPONDING),
        (HostState.STOPPED, HostState.OK),
        (HostState.STOPPED, HostState.MAINTENANCE),
    ],
)
def test_legal_stop_edges(old: HostState, new: HostState) -> None:
    assert change_host_state("node1", old, new) is new


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (HostState.STOPPED, HostState.FENCING),
        (HostState.STOPPED, HostState.FENCED),
        (HostState.STOPPED, HostState.SUSPECT),
        (HostState.STOPPED, HostState.NOT_RESPONDING),
        (HostState.STOPPED, HostState.STOPPING),
        (HostState.STOPPING, HostState.FENCING),
        (HostState.STOPPING, HostState.MAINTENANCE),
        (HostState.STOPPING, HostState.SUSPECT),
        (HostState.FENCING, HostState.STOPPED),
        (HostState.FENCED, HostState.STOPPED),
        (HostState.FENCING, HostState.STOPPING),
        (HostState.FENCED, HostState.STOPPING),
        (HostState.NOT_RESPONDING, HostState.STOPPING),
        (HostState.SUSPECT, HostState.STOPPING),
        (HostState.MAINTENANCE, HostState.STOPPED),
    ],
)
def test_illegal_stop_edges(old: HostState, new: HostState) -> None:
    with pytest.raises(IllegalTransitionError, match=f"host node1 cannot go from {old.value} to {new.value}"):
        change_host_state("node1", old, new)


def test_the_stop_rows() -> None:
    assert HOST_TRANSITIONS[HostState.STOPPING] == frozenset(
        {HostState.STOPPED, HostState.OK, HostState.NOT_RESPONDING}
    )
    assert HOST_TRANSITIONS[HostState.STOPPED] == frozenset({HostState.OK, HostState.MAINTENANCE})

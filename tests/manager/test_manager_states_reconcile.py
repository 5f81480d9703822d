"""State tables, operation rules and reconcile: the pure decisions behind a refresh."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from manager.core.errors import FailedPreconditionError, IllegalTransitionError
from manager.core.model import ReportedVm, StorageKind, StorageLocation, VmOperation, VmRecord
from manager.core.operations import check_delete, check_operation
from manager.core.reconcile import importable_name, mark_unknown, reconcile
from manager.core.states import (
    HOST_TRANSITIONS,
    JOB_TRANSITIONS,
    VM_TRANSITIONS,
    HostState,
    JobState,
    VmState,
    change_host_state,
    change_job_state,
    change_vm_state,
    observed_vm_state_path,
)

NOW = datetime(2026, 11, 25, 17, 0, tzinfo=UTC)
CSV = StorageLocation(StorageKind.CSV, "Volume1")


def vm(
    name: str,
    host: str | None = "node1",
    state: VmState = VmState.RUNNING,
    vm_id: str | None = None,
    **kw: object,
) -> VmRecord:
    fields: dict = dict(
        id=vm_id or f"{name}-0000-id",
        name=name,
        host=host,
        state=state,
        highly_available=True,
        memory_mb=1024,
        cpus=1,
        disk_gb=20,
        storage=CSV,
    )
    fields.update(kw)
    return VmRecord(**fields)


def reported(record: VmRecord, state: VmState | None = None) -> ReportedVm:
    return ReportedVm(
        id=record.id,
        name=record.name,
        state=state or record.state,
        memory_mb=record.memory_mb,
        cpus=record.cpus,
        disk_gb=record.disk_gb,
        storage=record.storage,
        networks=record.networks,
        highly_available=record.highly_available,
    )


@pytest.mark.parametrize("table", [HOST_TRANSITIONS, VM_TRANSITIONS, JOB_TRANSITIONS])
def test_every_state_has_a_row_and_no_self_edges(table: dict) -> None:
    states = set(type(next(iter(table))))
    assert set(table) == states
    for state, targets in table.items():
        assert state not in targets and targets <= states


def test_setters_log_and_refuse_illegal_edges(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="manager.core.states"):
        assert change_host_state("node1", HostState.OK, HostState.NOT_RESPONDING) is HostState.NOT_RESPONDING
    assert "host node1: ok => not_responding" in caplog.text
    with pytest.raises(IllegalTransitionError, match="host node1 cannot go from fencing to ok"):
        change_host_state("node1", HostState.FENCING, HostState.OK)
    with pytest.raises(IllegalTransitionError):
        change_vm_state("web1", VmState.STOPPED, VmState.PAUSED)
    with pytest.raises(IllegalTransitionError):
        change_job_state("j", JobState.COMPLETED, JobState.FAILED)
    assert change_job_state("j", JobState.RUNNING, JobState.FAILED) is JobState.FAILED


def test_observed_path_goes_through_unknown_for_unseen_changes() -> None:
    assert observed_vm_state_path(VmState.STOPPED, VmState.STOPPED) == ()
    assert observed_vm_state_path(VmState.STOPPED, VmState.RUNNING) == (VmState.RUNNING,)
    assert observed_vm_state_path(VmState.STOPPED, VmState.PAUSED) == (VmState.UNKNOWN, VmState.PAUSED)
    # An agent never reports `creating`: only the manager writes it, once, at create.
    for old in VmState:
        for new in set(VmState) - {VmState.CREATING}:
            state = old
            for step in observed_vm_state_path(old, new):
                state = change_vm_state("x", state, step)
            assert state is new


def test_operation_rules() -> None:
    check_operation(vm("a", state=VmState.STOPPED), VmOperation.START)
    with pytest.raises(FailedPreconditionError, match="^VM a is stopped: it cannot be paused "):
        check_operation(vm("a", state=VmState.STOPPED), VmOperation.PAUSE)
    with pytest.raises(FailedPreconditionError, match="its host node1 does not answer"):
        check_operation(vm("a", state=VmState.UNKNOWN), VmOperation.SHUTDOWN)
    with pytest.raises(FailedPreconditionError, match="^VM a is running: stop it first$"):
        check_delete(vm("a"))
    for state in (VmState.STOPPED, VmState.SAVED, VmState.MISSING):
        check_delete(vm("a", state=state))


def test_reconcile_imports_updates_and_missing() -> None:
    web = vm("web1", state=VmState.RUNNING)
    db = vm("db1", state=VmState.STOPPED)
    elsewhere = vm("app1", host="node2")
    stranger = reported(vm("web1", vm_id="abcdef12-3456-7890", state=VmState.PAUSED))
    result = reconcile(
        "node1",
        [web, db, elsewhere],
        [reported(web, VmState.PAUSED), stranger],
        now=NOW,
    )
    assert [(v.name, v.state) for v in result.updates] == [("web1", VmState.PAUSED)]
    assert [(v.name, v.imported, v.host, v.created_at) for v in result.imports] == [
        ("web1-abcdef12", True, "node1", NOW)
    ]
    assert [(v.name, v.state) for v in result.missing] == [("db1", VmState.MISSING)]
    assert "no longer reports" in result.missing[0].reason


def test_reconcile_leaves_unchanged_and_busy_vms_alone() -> None:
    web = vm("web1")
    db = vm("db1")
    result = reconcile("node1", [web, db], [reported(web)], now=NOW, busy={db.id})
    assert result.updates == () and result.imports == () and result.missing == ()


def test_reconcile_follows_a_vm_that_moved_host() -> None:
    moved = vm("web1", host="node2")
    result = reconcile("node1", [moved], [reported(moved)], now=NOW)
    assert [(v.name, v.host) for v in result.updates] == [("web1", "node1")]


def test_mark_unknown() -> None:
    records = [vm("a"), vm("b", state=VmState.UNKNOWN), vm("c", host="node2")]
    changed = mark_unknown(records, "node1", "deadline exceeded")
    assert [(v.name, v.state) for v in changed] == [("a", VmState.UNKNOWN)]
    assert changed[0].reason == "host node1 does not answer: deadline exceeded"


def test_importable_name() -> None:
    assert importable_name("web1", "abcdef1234", ["db1"]) == "web1"
    assert importable_name("web1", "abcdef1234", ["web1"]) == "web1-abcdef12"

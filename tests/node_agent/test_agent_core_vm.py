"""Checks a host makes on a VM: its spec, its storage, its memory."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from agent_testkit import host_config

from node_agent.core.config import HostConfig, parse_host_config
from node_agent.core.errors import FailedPrecondition, InvalidArgument, ResourceExhausted
from node_agent.core.vm import (
    GIB,
    StorageKind,
    StorageRef,
    VmSpec,
    Workload,
    available_memory_mb,
    check_lun_free,
    check_memory_fits,
    check_storage_room,
    check_storage_visible,
    validate_spec,
)


@pytest.fixture
def host(tmp_path: Path) -> HostConfig:
    return parse_host_config(host_config(tmp_path))


SPEC = VmSpec(
    id="vm-1",
    name="web1",
    memory_mb=1024,
    cpus=2,
    disk_gb=20,
    storage=StorageRef(StorageKind.CSV, "Volume1"),
    networks=("External",),
)


def test_valid_spec_passes(host: HostConfig) -> None:
    validate_spec(SPEC, host)


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"id": ""}, InvalidArgument, "spec.id: is required"),
        ({"id": "../etc"}, InvalidArgument, "spec.id: '../etc' must be"),
        ({"name": " "}, InvalidArgument, "spec.name: is required"),
        ({"memory_mb": 0}, InvalidArgument, "spec.memory_mb: VM web1 needs a positive amount"),
        (
            {"cpus": 0},
            InvalidArgument,
            "spec.cpus: VM web1 asks for 0 virtual processors; host node1 allows 1 to 8",
        ),
        ({"cpus": 9}, InvalidArgument, "spec.cpus:"),
        ({"disk_gb": 0}, InvalidArgument, "spec.disk_gb:"),
        (
            {"networks": ("Internal",)},
            InvalidArgument,
            "spec.networks: host node1 has no virtual network named 'Internal'",
        ),
        (
            {"workload": Workload(-1, 2)},
            InvalidArgument,
            "spec.workload.dirty_rate_mb_per_s: must be a finite number from 0 to 10000, got -1",
        ),
        (
            {"storage": StorageRef(StorageKind.LUN, "lun3")},
            FailedPrecondition,
            "host node1 cannot see LUN lun3",
        ),
        (
            {"storage": StorageRef(StorageKind.CSV, "lun1")},
            FailedPrecondition,
            "host node1 cannot see CSV volume lun1",
        ),
        (
            {"storage": StorageRef(StorageKind.LOCAL_DISK, "D")},
            FailedPrecondition,
            "host node1 has no local disk D",
        ),
        ({"storage": StorageRef(StorageKind.LOCAL_DISK, "")}, InvalidArgument, "spec.storage.name:"),
    ],
)
def test_bad_specs(host: HostConfig, change: dict, error: type, message: str) -> None:
    with pytest.raises(error) as info:
        validate_spec(dataclasses.replace(SPEC, **change), host)
    assert info.value.message.startswith(message), info.value.message


INF, NAN = float("inf"), float("nan")


@pytest.mark.parametrize(
    ("workload", "message"),
    [
        (
            Workload(INF, 2),
            "spec.workload.dirty_rate_mb_per_s: must be a finite number from 0 to 10000, got inf",
        ),
        (
            Workload(NAN, 2),
            "spec.workload.dirty_rate_mb_per_s: must be a finite number from 0 to 10000, got nan",
        ),
        (
            Workload(1e9, 2),
            "spec.workload.dirty_rate_mb_per_s: must be a finite number from 0 to 10000, got 1e+09",
        ),
        (
            Workload(-INF, 2),
            "spec.workload.dirty_rate_mb_per_s: must be a finite number from 0 to 10000, got -inf",
        ),
        (
            Workload(1, INF),
            "spec.workload.journal_writes_per_s: must be a finite number from 0 to 10000, got inf",
        ),
        (
            Workload(1, NAN),
            "spec.workload.journal_writes_per_s: must be a finite number from 0 to 10000, got nan",
        ),
        (
            Workload(1, 10000.5),
            "spec.workload.journal_writes_per_s: must be a finite number from 0 to 10000, got",
        ),
    ],
)
def test_guest_rates_must_be_finite_and_bounded(host: HostConfig, workload: Workload, message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        validate_spec(dataclasses.replace(SPEC, workload=workload), host)
    assert info.value.message.startswith(message), info.value.message
    assert info.value.code == "INVALID_ARGUMENT"


def test_the_rate_bound_is_a_setting(host: HostConfig) -> None:
    validate_spec(dataclasses.replace(SPEC, workload=Workload(10000, 10000)), host)
    validate_spec(dataclasses.replace(SPEC, workload=Workload(0, 0)), host)
    strict = dataclasses.replace(host, settings=dataclasses.replace(host.settings, max_guest_rate=50.0))
    with pytest.raises(InvalidArgument, match="from 0 to 50, got 51"):
        validate_spec(dataclasses.replace(SPEC, workload=Workload(51, 1)), strict)


def test_storage_capacity(host: HostConfig) -> None:
    assert check_storage_visible(StorageRef(StorageKind.LOCAL_DISK, "C"), host) == 500 * GIB
    assert check_storage_visible(StorageRef(StorageKind.LUN, "lun1"), host) == 200 * GIB


def test_storage_room() -> None:
    check_storage_room(SPEC, capacity_bytes=20 * GIB, used_bytes=0)
    with pytest.raises(ResourceExhausted, match="needs 20 GB, 19 GB free"):
        check_storage_room(SPEC, capacity_bytes=20 * GIB, used_bytes=GIB)


def test_a_lun_holds_one_vm() -> None:
    on_lun = dataclasses.replace(SPEC, storage=StorageRef(StorageKind.LUN, "lun1"))
    check_lun_free(on_lun, [])
    check_lun_free(on_lun, ["vm-1"])  # itself, coming back
    with pytest.raises(FailedPrecondition, match="LUN lun1 already holds VM vm-2"):
        check_lun_free(on_lun, ["vm-2"])
    check_lun_free(SPEC, ["vm-2", "vm-3"])  # a CSV holds many


def test_memory_accounting(host: HostConfig) -> None:
    assert available_memory_mb(host, []) == 6144
    assert available_memory_mb(host, [1024, 2048]) == 3072
    big = dataclasses.replace(SPEC, memory_mb=2048)
    check_memory_fits(host, big, [4096])
    with pytest.raises(ResourceExhausted) as info:
        check_memory_fits(host, big, [4096, 1024])
    assert info.value.message == (
        "not enough memory on node1 to start web1: needs 2048 MB, 1024 MB available"
    )


def test_default_workload() -> None:
    assert SPEC.effective_workload == Workload(1.0, 2.0)
    assert SPEC.memory_pages == 1024 * 256

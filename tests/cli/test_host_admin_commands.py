"""`havm host add --address` and `havm host remove` against a fake manager: what the
command sends (the host entry with the topology's defaults under it), what it prints,
and one sentence for every refusal."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from fake_manager_service import FakeManager, serve
from havm_runner import Result, run_havm

from havm.v1 import common_pb2, manager_pb2

GIB = 1024**3


class HostAdminFake(FakeManager):
    """The fake manager with AddHost and RemoveHost as the real one answers them."""

    def AddHost(self, request, context):
        self.calls.append(("AddHost", request))
        config = request.host
        if config.name in self.hosts:
            context.abort(grpc.StatusCode.ALREADY_EXISTS, f"host {config.name} already exists")
        if config.cluster and config.cluster not in self.clusters:
            context.abort(grpc.StatusCode.NOT_FOUND, f"cluster {config.cluster} does not exist")
        host = manager_pb2.Host(
            name=config.name,
            cluster=config.cluster,
            profile=config.profile,
            state=manager_pb2.HOST_STATE_OK,
            address=config.address,
            cpu=config.cpu,
            memory_mb=config.memory_mb,
            memory_free_mb=config.memory_mb - config.host_reserve_mb,
            disks=config.disks,
            networks=config.networks,
        )
        error = f"host {config.name} was added but does not answer" if config.name == "deaf1" else ""
        job = self._running_job("add_host", config.name, message=f"Added host {config.name}", error=error)
        self.hosts[config.name] = host
        return manager_pb2.AddHostResponse(job=job, host=host)

    def RemoveHost(self, request, context):
        self.calls.append(("RemoveHost", request))
        if request.name not in self.hosts:
            context.abort(grpc.StatusCode.NOT_FOUND, f"host {request.name} does not exist")
        placed = sorted(v.name for v in self.vms.values() if v.host == request.name)
        if placed:
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"host {request.name} cannot be removed: VM {placed[0]} is placed on it; "
                "move or delete it first",
            )
        del self.hosts[request.name]
        return manager_pb2.RemoveHostResponse(job=self._running_job("remove_host", request.name))


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[HostAdminFake, str]]:
    manager = HostAdminFake()
    server, port = serve(manager)
    try:
        yield manager, f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)


@pytest.fixture
def havm(fake: tuple[HostAdminFake, str], tmp_path: Path) -> Callable[..., Result]:
    def run(*args: str) -> Result:
        return run_havm(["--manager", fake[1], *args], tmp_path)

    return run


def one_error(result: Result) -> str:
    assert result.returncode == 1, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def last_add(fake: HostAdminFake) -> manager_pb2.HostConfig:
    return [request for name, request in fake.calls if name == "AddHost"][-1].host


def test_add_registers_a_running_agent_with_the_defaults_under_the_flags(fake, havm) -> None:
    result = havm(
        "host",
        "add",
        "node9",
        "--cluster",
        "hv1",
        "--memory-mb",
        "65536",
        "--address",
        "10.0.0.9:50051",
        "-o",
        "json",
    )
    assert result.returncode == 0, result.stderr
    shown = result.json()
    assert (shown["name"], shown["cluster"], shown["state"], shown["memory_mb"]) == (
        "node9",
        "hv1",
        "ok",
        65536,
    )
    config = last_add(fake[0])
    assert (config.name, config.cluster, config.address, config.migration_address) == (
        "node9",
        "hv1",
        "10.0.0.9:50051",
        "",
    )
    # Everything not given comes from the built-in topology's host_defaults.
    assert config.profile == common_pb2.PROFILE_HYPERV_2008R2
    assert (config.memory_mb, config.host_reserve_mb) == (65536, 2048)
    assert (config.cpu.vendor, config.cpu.cores, config.cpu.mhz) == ("GenuineIntel", 8, 2933)
    assert [(d.name, d.capacity_bytes) for d in config.disks] == [("C", 500 * GIB)]
    assert [n.name for n in config.networks] == ["External"]


def test_a_config_file_is_a_host_entry_and_the_flags_win(fake, havm, tmp_path: Path) -> None:
    entry = tmp_path / "esx5.yaml"
    entry.write_text(
        "profile: esx\nmemory_mb: 4096\nhost_reserve_mb: 512\n"
        "disks: [{name: local1, capacity_gb: 80}]\n"
        "networks: [{name: VM Network, bound_to: vSwitch0, vlan_id: 7}]\n"
    )
    result = havm(
        "host", "add", "esx5", "--config", str(entry), "--memory-mb", "8192", "--address", "10.0.0.5:1"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("host esx5 added to the cluster as a standalone host (ok;")
    config = last_add(fake[0])
    assert (config.profile, config.memory_mb, config.host_reserve_mb) == (common_pb2.PROFILE_ESX, 8192, 512)
    assert [(d.name, d.capacity_bytes) for d in config.disks] == [("local1", 80 * GIB)]
    assert [(n.name, n.bound_to, n.vlan_id) for n in config.networks] == [("VM Network", "vSwitch0", 7)]
    assert config.cluster == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("node1", "--address", "10.0.0.1:1"), "error: host node1 already exists"),
        (("fresh1", "--cluster", "nosuch", "--address", "10.0.0.1:1"), "error: cluster nosuch does not"),
        (("fresh1", "--address", "nowhere"), "error: host fresh1: host.address: must be host:port"),
        (("fresh1",), "error: no local cluster in .havm: `havm host add` starts the host's agent"),
        (
            ("fresh1", "--memory-mb", "100", "--address", "10.0.0.1:1"),
            "error: host fresh1: host.memory_mb: must be greater than host_reserve_mb (2048), got 100",
        ),
        (("deaf1", "--address", "10.0.0.1:1"), "error: host deaf1 was added but does not answer"),
    ],
)
def test_refusals_are_one_sentence(havm, args: tuple[str, ...], message: str) -> None:
    assert one_error(havm("host", "add", *args)).startswith(message)


def test_a_bad_config_file_names_the_file_and_the_field(havm, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("memroy_mb: 1\n")
    assert one_error(havm("host", "add", "n9", "--config", str(bad), "--address", "10.0.0.1:1")) == (
        f"error: config {bad}: host.memroy_mb: unknown field"
    )
    bad.write_text("- name: n9\n")
    assert "must be a host entry of the topology's format" in one_error(
        havm("host", "add", "n9", "--config", str(bad), "--address", "10.0.0.1:1")
    )
    bad.write_text("name: other\n")
    assert "name: is 'other', but the command adds host 'n9'" in one_error(
        havm("host", "add", "n9", "--config", str(bad), "--address", "10.0.0.1:1")
    )
    missing = havm("host", "add", "n9", "--config", str(tmp_path / "none.yaml"), "--address", "10.0.0.1:1")
    assert "cannot read" in one_error(missing)


def test_remove_waits_for_the_job_and_refusals_name_the_vms(fake, havm) -> None:
    assert havm("host", "add", "gone1", "--address", "10.0.0.7:1").returncode == 0
    result = havm("host", "remove", "gone1")
    assert (result.returncode, result.stdout.strip()) == (0, "host gone1 removed")
    assert "gone1" not in fake[0].hosts
    assert one_error(havm("host", "remove", "gone1")) == "error: host gone1 does not exist"
    placed = next(v for v in fake[0].vms.values() if v.host)
    assert one_error(havm("host", "remove", placed.host)) == (
        f"error: host {placed.host} cannot be removed: VM {placed.name} is placed on it; "
        "move or delete it first"
    )
    assert havm("host", "add", "gone2", "--address", "10.0.0.8:1").returncode == 0
    removed = havm("host", "remove", "gone2", "-o", "json")
    assert removed.returncode == 0 and removed.json()["kind"] == "remove_host"

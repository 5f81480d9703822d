"""`havm host add --address` and `havm host remove` against the real manager of a
simulated cluster: the host entry the command builds (the topology's defaults under the
flags) as the manager records it, what it prints, and one sentence for every refusal.

An added host's agent is booted beside the cluster first, as it would run somewhere
else; `--address` registers it.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from havm_runner import one_error_line

from havm.contract.hosts import host_defaults_of
from havm.contract.topology import VolumeSpec, parse_host_entry
from havm.scenario.testing import SimClusterSession

GIB = 1024**3
# The built-in topology's host_defaults (which `host add` fills in when not given),
# written out: the agent booted for an added host is described by them.
DEFAULTS = {
    "host_defaults": {
        "profile": "hyperv-2008r2",
        "cpu": {
            "vendor": "GenuineIntel",
            "model": "Intel Xeon X5570",
            "features": ["sse3", "ssse3", "sse4_1", "sse4_2", "popcnt", "vmx", "nx", "lm"],
            "cores": 8,
            "mhz": 2933,
        },
        "memory_mb": 32768,
        "host_reserve_mb": 2048,
        "disks": [{"name": "C", "capacity_gb": 500}],
        "networks": [{"name": "External", "bound_to": "Broadcom BCM5709C NetXtreme II #1", "vlan_id": 0}],
    }
}


@pytest.fixture
def admin(cluster: SimClusterSession, tmp_path: Path):
    """`admin(*ARGS)`: `havm --state-dir <empty> ARGS` (no local cluster there)."""
    state_dir = tmp_path / "no-local-cluster"

    def run(*args: str):
        return cluster.cli("--state-dir", str(state_dir), *args)

    return run


def boot(
    cluster: SimClusterSession,
    entry: dict,
    cluster_name: str | None = None,
    volumes: tuple[VolumeSpec, ...] = (),
) -> str:
    """Start the agent of a host entry (over the defaults); return its address."""
    spec = parse_host_entry(entry, host_defaults_of(DEFAULTS), field="host")
    return cluster.add_agent(replace(spec, cluster=cluster_name), volumes)


def test_add_registers_a_running_agent_with_the_defaults_under_the_flags(
    cluster: SimClusterSession, admin
) -> None:
    volumes = tuple(VolumeSpec(name, "csv", 1024, ("node9",)) for name in ("Volume1", "Volume2"))
    address = boot(cluster, {"name": "node9", "memory_mb": 65536}, "hv1", volumes)
    result = admin(
        "host", "add", "node9", "--cluster", "hv1", "--memory-mb", "65536", "--address", address, "-o", "json"
    )
    assert result.exit_code == 0, result.stderr
    shown = result.json()
    assert (shown["name"], shown["cluster"], shown["state"], shown["memory_mb"]) == (
        "node9",
        "hv1",
        "ok",
        65536,
    )
    assert (shown["address"], shown["added_at_runtime"]) == (address, True)
    assert shown["memory_free_mb"] == 65536 - 2048
    assert (shown["cpu"]["vendor"], shown["cpu"]["cores"], shown["cpu"]["mhz"]) == ("GenuineIntel", 8, 2933)
    assert [(d["name"], d["capacity_bytes"]) for d in shown["disks"]] == [("C", 500 * GIB)]
    assert [n["name"] for n in shown["networks"]] == ["External"]
    assert cluster.cli("cluster", "show", "hv1", "-o", "json").json()["nodes"] == [
        "node1",
        "node2",
        "node3",
        "node9",
    ]


def test_a_config_file_is_a_host_entry_and_the_flags_win(
    cluster: SimClusterSession, admin, tmp_path: Path
) -> None:
    entry = tmp_path / "esx5.yaml"
    entry.write_text(
        "profile: esx\nmemory_mb: 4096\nhost_reserve_mb: 512\n"
        "disks: [{name: local1, capacity_gb: 80}]\n"
        "networks: [{name: VM Network, bound_to: vSwitch0, vlan_id: 7}]\n"
    )
    address = boot(
        cluster,
        {
            "name": "esx5",
            "profile": "esx",
            "memory_mb": 8192,
            "host_reserve_mb": 512,
            "disks": [{"name": "local1", "capacity_gb": 80}],
            "networks": [{"name": "VM Network", "bound_to": "vSwitch0", "vlan_id": 7}],
        },
    )
    result = admin("host", "add", "esx5", "--config", str(entry), "--memory-mb", "8192", "--address", address)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"host esx5 added to the cluster as a standalone host (ok; agent at {address})\n"
    shown = cluster.cli("host", "show", "esx5", "-o", "json").json()
    assert (shown["profile"], shown["memory_mb"], shown["memory_free_mb"], shown["cluster"]) == (
        "esx",
        8192,
        7680,
        None,
    )
    assert [(d["name"], d["capacity_bytes"]) for d in shown["disks"]] == [("local1", 80 * GIB)]
    assert [(n["name"], n["kind"], n["bound_to"], n["vlan_id"]) for n in shown["networks"]] == [
        ("VM Network", "port_group", "vSwitch0", 7)
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("node1", "--address", "10.0.0.1:1"), "error: host node1 already exists"),
        (
            ("fresh1", "--cluster", "nosuch", "--address", "10.0.0.1:1"),
            "error: cluster nosuch does not exist",
        ),
        (("fresh1", "--address", "nowhere"), "error: host fresh1: host.address: must be host:port"),
        (("fresh1",), "error: no local cluster in "),
        (
            ("fresh1", "--memory-mb", "100", "--address", "10.0.0.1:1"),
            "error: host fresh1: host.memory_mb: must be greater than host_reserve_mb (2048), got 100",
        ),
        (
            ("deaf1", "--address", "deaf1.sim:50051"),
            "error: host deaf1 was added to the manager as a standalone host but does not answer: ",
        ),
    ],
)
def test_refusals_are_one_sentence(admin, args: tuple[str, ...], message: str) -> None:
    result = admin("host", "add", *args)
    assert result.exit_code == 1
    assert one_error_line(result).startswith(message)


def test_no_local_cluster_says_what_to_give(admin) -> None:
    line = one_error_line(admin("host", "add", "fresh1"))
    assert "`havm host add` starts the host's agent" in line and "--address HOST:PORT" in line


def test_a_host_that_never_answered_stays_recorded_as_sent(cluster: SimClusterSession, admin) -> None:
    assert admin("host", "add", "deaf1", "--address", "deaf1.sim:50051").exit_code == 1
    deaf = cluster.cli("host", "show", "deaf1", "-o", "json").json()
    # What the manager recorded is what the command sent: the defaults, nothing refreshed.
    assert (deaf["state"], deaf["added_at_runtime"], deaf["cluster"]) == ("not_responding", True, None)
    assert (
        deaf["state_reason"]
        == "agent of host deaf1 is unavailable (failed to connect to deaf1.sim:50051: refused)"
    )
    assert (deaf["profile"], deaf["memory_mb"], deaf["memory_free_mb"]) == (
        "hyperv-2008r2",
        32768,
        32768 - 2048,
    )
    assert deaf["cpu"] == DEFAULTS["host_defaults"]["cpu"]
    assert [(d["name"], d["capacity_bytes"]) for d in deaf["disks"]] == [("C", 500 * GIB)]
    assert [(n["name"], n["bound_to"]) for n in deaf["networks"]] == [
        ("External", "Broadcom BCM5709C NetXtreme II #1")
    ]
    removed = admin("host", "remove", "deaf1")
    assert (removed.exit_code, removed.stdout) == (0, "host deaf1 removed\n")


def test_a_bad_config_file_names_the_file_and_the_field(admin, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("memroy_mb: 1\n")
    assert one_error_line(admin("host", "add", "n9", "--config", str(bad), "--address", "10.0.0.1:1")) == (
        f"error: config {bad}: host.memroy_mb: unknown field"
    )
    bad.write_text("- name: n9\n")
    assert "must be a host entry of the topology's format" in one_error_line(
        admin("host", "add", "n9", "--config", str(bad), "--address", "10.0.0.1:1")
    )
    bad.write_text("name: other\n")
    assert "name: is 'other', but the command adds host 'n9'" in one_error_line(
        admin("host", "add", "n9", "--config", str(bad), "--address", "10.0.0.1:1")
    )
    missing = admin("host", "add", "n9", "--config", str(tmp_path / "none.yaml"), "--address", "10.0.0.1:1")
    assert "cannot read" in one_error_line(missing)


def test_remove_waits_for_the_job_and_refusals_name_the_vms(cluster: SimClusterSession, admin) -> None:
    result = admin("host", "remove", "solo2")
    assert (result.exit_code, result.stdout) == (0, "host solo2 removed\n")
    assert "solo2" not in {h["name"] for h in cluster.cli("host", "list", "-o", "json").json()}
    assert one_error_line(admin("host", "remove", "solo2")) == "error: host solo2 does not exist"
    assert cluster.cli("vm", "create", "web1", "--memory-mb", "256", "--host", "solo1").exit_code == 0
    refused = admin("host", "remove", "solo1")
    assert refused.exit_code == 1
    assert one_error_line(refused).startswith("error: host solo1 cannot be removed: ")
    assert "web1" in refused.stderr
    removed = admin("host", "remove", "esx1", "-o", "json")
    assert removed.exit_code == 0 and removed.json()["kind"] == "remove_host"

"""Every cause of an unsupported cluster configuration, under each VMM level where it
applies, with the VM made through the manager and on the host behind its back; Repair
and Ignore; the cluster's networks and groups; drive letters and volume GUID paths.

All against a simulated cluster (the real manager and real agents on virtual time),
driven by the real command line."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from havm.scenario.cli_bridge import CommandResult
from havm.scenario.testing import SimClusterSession, sim_cluster

LUNS = 30


def topology(level: str) -> dict:
    return {
        "version": 1,
        "vmm_version": level,
        "host_defaults": {
            "profile": "hyperv-2008r2",
            "cpu": {
                "vendor": "GenuineIntel",
                "model": "Xeon X5570",
                "features": ["sse3"],
                "cores": 8,
                "mhz": 2933,
            },
            "memory_mb": 65536,
            "host_reserve_mb": 1024,
            "disks": [{"name": "C", "capacity_gb": 200}],
        },
        "clusters": [
            {
                "name": "c1",
                "profile": "hyperv-2008r2",
                "reserve": 1,
                "nodes": ["node1", "node2"],
                "luns": [{"name": f"lun{i:02d}", "capacity_gb": 50} for i in range(1, LUNS + 1)],
            }
        ],
        "hosts": [
            {
                "name": "node1",
                "networks": [
                    {"name": "External", "bound_to": "NIC 1"},
                    {"name": "Backend", "bound_to": "NIC 2", "vlan_id": 5},
                ],
            },
            {
                "name": "node2",
                "networks": [
                    {"name": "External", "bound_to": "NIC 1"},
                    {"name": "Backend", "bound_to": "NIC 2", "vlan_id": 6},
                ],
            },
            {"name": "standalone1", "networks": [{"name": "External", "bound_to": "NIC 1"}]},
        ],
    }


def session(tmp_path: Path, level: str) -> Iterator[SimClusterSession]:
    path = tmp_path / "topology.yaml"
    path.write_text(yaml.safe_dump(topology(level)))
    with sim_cluster(path, tmp_path / "sim") as cluster:
        yield cluster


@pytest.fixture(scope="module", params=["2008r2", "2008"])
def level(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, level: str) -> Iterator[SimClusterSession]:
    """One cluster per level for the cause-by-cause tests: each uses VMs, LUNs and
    networks of its own, so they need not pay for a cluster each."""
    yield from session(tmp_path_factory.mktemp(f"vmm{level}"), level)


@pytest.fixture
def r2(tmp_path: Path) -> Iterator[SimClusterSession]:
    yield from session(tmp_path, "2008r2")


def ok(cluster: SimClusterSession, *argv: str) -> CommandResult:
    result = cluster.cli(*argv)
    assert result.exit_code == 0, f"havm {' '.join(argv)}: {result.stderr}"
    return result


def refused(cluster: SimClusterSession, *argv: str) -> str:
    result = cluster.cli(*argv)
    assert result.exit_code == 1, result.stdout
    assert "Traceback" not in result.stderr and result.stderr.startswith("error: "), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result.stderr


def vm(cluster: SimClusterSession, name: str) -> dict:
    return dict(ok(cluster, "vm", "show", name, "-o", "json").json())


def causes(cluster: SimClusterSession, name: str) -> list[str]:
    shown = vm(cluster, name)
    standing = [r["cause"] for r in shown["status_reasons"] if r not in shown["ignored_reasons"]]
    assert (shown["status"] == "ok") == (not standing), shown
    return standing


_luns = itertools.count(1)
# lun29 and lun30 are left to the tests that name them.
SPARE_LUNS = 28


def next_lun() -> str:
    return f"lun:lun{next(_luns) % SPARE_LUNS + 1:02d}"


Make = Callable[..., str]


def through_manager(cluster: SimClusterSession, name: str, *extra: str, host: str = "node1") -> str:
    ok(cluster, "vm", "create", name, "--ha", "--host", host, "--memory-mb", "128", "--no-start", *extra)
    return name


def on_the_host(cluster: SimClusterSession, name: str, *extra: str, host: str = "node1") -> str:
    ok(cluster, "host", "vm", "create", host, name, "--ha", "--memory-mb", "128", *extra)
    ok(cluster, "cluster", "refresh")
    return name


ORIGINS = {"manager": through_manager, "host": on_the_host}


@pytest.fixture(params=sorted(ORIGINS))
def origin(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make(origin: str) -> Make:
    """Makes a VM the origin's way, its name marked with the origin (the cluster is shared)."""

    def made(cluster: SimClusterSession, name: str, *extra: str, host: str = "node1") -> str:
        return ORIGINS[origin](cluster, f"{name}-{origin}", *extra, host=host)

    return made


# ----------------------------------------------------------------- cause by cause


def test_network_not_common(cluster: SimClusterSession, origin: str, make: Make) -> None:
    # Backend has VLAN 5 on node1 and 6 on node2.
    name = make(cluster, "netvm", "--storage", next_lun(), "--network", "Backend")
    assert causes(cluster, name) == ["network_not_common"]
    (reason,) = vm(cluster, name)["status_reasons"]
    assert reason["detail"].endswith("on node2 VLAN 6, not 5") or reason["detail"].endswith(
        "on node1 VLAN 5, not 6"
    )
    plain = make(cluster, "plain", "--storage", next_lun(), "--network", "External")
    assert causes(cluster, plain) == []


def test_local_storage(cluster: SimClusterSession, origin: str, make: Make) -> None:
    if origin == "manager":
        # The manager never puts an HA VM's files on a local disk; a pass-through disk can be.
        assert "not on local disk C" in refused(
            cluster,
            "vm",
            "create",
            "x",
            "--ha",
            "--host",
            "node1",
            "--memory-mb",
            "64",
            "--storage",
            "local:C",
        )
        name = make(cluster, "localvm", "--storage", next_lun())
        ok(cluster, "vm", "attach-disk", name, "--passthrough", "local:C")
    else:
        # On node2: node1's disk C is the other origin's pass-through disk.
        name = make(cluster, "localvm", "--storage", "local:C", host="node2")
    assert causes(cluster, name) == ["local_storage"]


def test_standalone_host(cluster: SimClusterSession, origin: str, make: Make) -> None:
    if origin == "manager":
        assert "standalone" in refused(
            cluster, "vm", "create", "alone", "--ha", "--host", "standalone1", "--memory-mb", "128"
        )
        return
    name = make(cluster, "alone", host="standalone1")
    assert causes(cluster, name) == ["standalone_host", "local_storage"]


def test_shared_lun(cluster: SimClusterSession, origin: str, make: Make) -> None:
    lun = next_lun()
    first = make(cluster, "first", "--storage", lun)
    if origin == "manager":
        # The manager keeps one VM per LUN; a VM made on a host may share it.
        second_create = (
            "vm",
            "create",
            f"second-{origin}",
            "--ha",
            "--host",
            "node2",
            "--memory-mb",
            "64",
            "--storage",
            lun,
        )
        assert "lun" in refused(cluster, *second_create).lower()
    second = on_the_host(cluster, f"second-{origin}", "--storage", lun, host="node2")
    assert causes(cluster, first) == causes(cluster, second) == ["shared_lun"]
    ok(cluster, "vm", "delete", second, "--yes")
    assert causes(cluster, first) == []


def test_passthrough_not_clustered(cluster: SimClusterSession, origin: str, make: Make) -> None:
    # A LUN node1 sees that is no disk of the cluster.
    ok(cluster, "host", "storage", "add", "node1", f"lonely-{origin}", "--kind", "lun", "--capacity-gb", "5")
    ok(cluster, "cluster", "refresh")
    if origin == "manager":
        name = make(cluster, "ptvm", "--storage", next_lun())
        ok(cluster, "vm", "attach-disk", name, "--passthrough", f"lun:lonely-{origin}")
    else:
        name = make(cluster, "ptvm", "--storage", next_lun(), "--passthrough", f"lun:lonely-{origin}")
    assert causes(cluster, name) == ["passthrough_not_clustered"]
    # A pass-through disk that is a cluster LUN is supported.
    ok(cluster, "vm", "detach-disk", name, "--passthrough", f"lun:lonely-{origin}")
    ok(
        cluster,
        "vm",
        "attach-disk",
        name,
        "--passthrough",
        "lun:lun29" if origin == "manager" else "lun:lun30",
    )
    assert causes(cluster, name) == []


def test_extra_cluster_resources_under_vmm_2008_only(
    cluster: SimClusterSession, level: str, make: Make
) -> None:
    name = make(cluster, "grouped", "--storage", next_lun())
    ok(cluster, "host", "cluster-resource", "add", "node1", name, "Replica", "--type", "Generic Service")
    ok(cluster, "cluster", "refresh")
    assert vm(cluster, name)["cluster_resources"] == [{"name": "Replica", "type": "Generic Service"}]
    assert causes(cluster, name) == (["extra_cluster_resources"] if level == "2008" else [])


def test_iso_attached_under_vmm_2008_only(
    cluster: SimClusterSession, level: str, origin: str, make: Make
) -> None:
    iso = "C:\\Windows\\system32\\vmguest.iso"
    if origin == "manager":
        name = make(cluster, "disc", "--storage", next_lun())
        ok(cluster, "vm", "attach-iso", name, iso)
    else:
        name = make(cluster, "disc", "--storage", next_lun(), "--iso", iso)
    assert vm(cluster, name)["iso_image"] == iso
    assert causes(cluster, name) == (["iso_attached"] if level == "2008" else [])
    ok(cluster, "vm", "detach-iso", name)
    assert causes(cluster, name) == []


def test_network_names_differing_in_case_are_common_under_2008_r2_only(
    cluster: SimClusterSession, level: str
) -> None:
    ok(cluster, "host", "network", "add", "node1", "Storage", "--bound-to", "NIC 3")
    ok(cluster, "host", "network", "add", "node2", "storage", "--bound-to", "NIC 3")
    ok(cluster, "cluster", "refresh")
    name = through_manager(cluster, "cased", "--storage", next_lun(), "--network", "Storage")
    networks = {n["name"]: n for n in ok(cluster, "cluster", "show", "c1", "-o", "json").json()["networks"]}
    if level == "2008r2":
        assert networks["Storage"]["common"] and causes(cluster, name) == []
    else:
        assert networks["Storage"]["differs_on"] == {
            "node2": "named 'storage', not 'Storage' (this level compares names case-sensitively)"
        }
        assert causes(cluster, name) == ["network_not_common"]


def test_the_cluster_lists_its_networks_and_how_nodes_differ(r2: SimClusterSession) -> None:
    networks = {n["name"]: n for n in ok(r2, "cluster", "show", "c1", "-o", "json").json()["networks"]}
    assert networks["External"] | {"kind": None} == {
        "name": "External",
        "kind": None,
        "common": True,
        "vlan_id": 0,
        "bound_to": "NIC 1",
        "missing_on": [],
        "differs_on": {},
    }
    backend = networks["Backend"]
    assert not backend["common"] and len(backend["differs_on"]) == 1
    ok(r2, "host", "network", "remove", "node2", "Backend")
    ok(r2, "cluster", "refresh")
    backend = {n["name"]: n for n in ok(r2, "cluster", "show", "c1", "-o", "json").json()["networks"]}[
        "Backend"
    ]
    assert (backend["missing_on"], backend["differs_on"]) == (["node2"], {})


# ------------------------------------------------------------------ Repair and Ignore


def test_repair_after_the_fix_ignore_and_a_new_cause_after_ignore(r2: SimClusterSession) -> None:
    name = through_manager(r2, "web", "--storage", next_lun(), "--network", "Backend")
    assert causes(r2, name) == ["network_not_common"]
    # Still different: repair says so.
    still = ok(r2, "vm", "repair", name)
    assert "still in an unsupported cluster configuration" in still.stdout
    ok(r2, "host", "network", "set", "node2", "Backend", "--vlan", "5")
    repaired = ok(r2, "vm", "repair", name)
    assert "its cluster configuration is supported" in repaired.stdout and causes(r2, name) == []

    ok(r2, "host", "network", "set", "node2", "Backend", "--bound-to", "NIC 9")
    ok(r2, "cluster", "refresh")
    assert causes(r2, name) == ["network_not_common"]
    ignored = ok(r2, "vm", "repair", name, "--ignore", "-o", "json").json()
    assert ignored["status"] == "ok" and [r["cause"] for r in ignored["ignored_reasons"]] == [
        "network_not_common"
    ]
    # Nothing more to ignore; retry and undo are for failed VMs.
    assert "is stopped, not failed: nothing to retry" in refused(r2, "vm", "repair", name, "--retry")
    # A new, different cause counts again.
    ok(r2, "vm", "attach-disk", name, "--passthrough", "local:C")
    assert causes(r2, name) == ["local_storage"]
    assert [r["cause"] for r in vm(r2, name)["ignored_reasons"]] == ["network_not_common"]


def test_the_status_and_what_was_ignored_survive_a_manager_restart(r2: SimClusterSession) -> None:
    name = through_manager(r2, "kept", "--storage", next_lun(), "--network", "Backend")
    ok(r2, "vm", "repair", name, "--ignore")
    before = vm(r2, name)
    assert before["status"] == "ok" and [r["cause"] for r in before["ignored_reasons"]] == [
        "network_not_common"
    ]
    ok(r2, "fault", "crash-manager")
    ok(r2, "restart", "manager")
    r2.advance(6)
    after = vm(r2, name)
    assert (after["status"], after["status_reasons"], after["ignored_reasons"]) == (
        before["status"],
        before["status_reasons"],
        before["ignored_reasons"],
    )


def test_a_lun_another_vm_uses_cannot_be_passed_through(r2: SimClusterSession) -> None:
    through_manager(r2, "owner", "--storage", "lun:lun11")
    name = through_manager(r2, "raw", "--storage", "lun:lun12", host="node2")
    assert "LUN lun11 is used by VM owner" in refused(
        r2, "vm", "attach-disk", name, "--passthrough", "lun:lun11"
    )
    ok(r2, "vm", "attach-disk", name, "--passthrough", "lun:lun13")
    # Nor can a new VM's files go on a LUN passed through to another.
    assert "lun13" in refused(
        r2, "vm", "create", "late", "--ha", "--host", "node1", "--memory-mb", "64", "--storage", "lun:lun13"
    )


# -------------------------------------------------- groups, drive letters, GUID paths


def test_thirty_luns_on_one_node_get_letters_then_volume_guid_paths(r2: SimClusterSession) -> None:
    for i in range(1, LUNS + 1):
        ok(r2, "vm", "create", f"v{i:02d}", "--ha", "--host", "node1", "--memory-mb", "64", "--no-start",
           "--storage", f"lun:lun{i:02d}")  # fmt: skip
    listed = {v["name"]: v for v in ok(r2, "vm", "list", "-o", "json").json()}
    # C is node1's local disk: the LUNs take D to Z in name order, then GUID paths.
    assert [listed[f"v{i:02d}"]["path"] for i in range(1, 24)] == [
        f"{d}:\\v{i:02d}" for i, d in zip(range(1, 24), "DEFGHIJKLMNOPQRSTUVWXYZ", strict=True)
    ]
    guid_paths = [listed[f"v{i:02d}"]["path"] for i in range(24, LUNS + 1)]
    assert all(
        p.startswith("\\\\?\\Volume{") and p.endswith(f"}}\\v{i:02d}")
        for i, p in zip(range(24, 31), guid_paths, strict=True)
    )
    groups = ok(r2, "cluster", "groups", "c1", "-o", "json").json()
    assert len(groups) == LUNS and {g["owner_node"] for g in groups} == {"node1"}
    disk = next(r for r in groups[-1]["resources"] if r["kind"] == "physical_disk")
    assert (disk["name"], disk["online_on"], disk["path"]) == (
        "Cluster Disk lun30",
        ["node1"],
        guid_paths[-1][: -len("v30")],
    )


def test_a_group_is_created_with_its_vm_moves_with_it_and_goes_with_it(r2: SimClusterSession) -> None:
    ok(r2, "vm", "create", "g1", "--ha", "--host", "node1", "--memory-mb", "128", "--storage", "lun:lun05")

    def group() -> dict | None:
        groups = ok(r2, "cluster", "groups", "c1", "-o", "json").json()
        return next((g for g in groups if g["vm"] == "g1"), None)

    created = group()
    assert (
        created is not None and created["name"] == "SCVMM g1 Resources" and created["owner_node"] == "node1"
    )
    assert [(r["kind"], r["online_on"]) for r in created["resources"]] == [
        ("virtual_machine", ["node1"]),
        ("vm_configuration", ["node1"]),
        ("physical_disk", ["node1"]),
    ]
    ok(r2, "vm", "migrate", "g1", "--to", "node2")
    moved = group()
    assert moved is not None and moved["owner_node"] == "node2"
    assert moved["resources"][2]["online_on"] == ["node2"] and vm(r2, "g1")["path"] == "D:\\g1"
    ok(r2, "vm", "stop", "g1")
    ok(r2, "vm", "delete", "g1", "--yes")
    assert group() is None


# ------------------------------------------------------------------------ bad input


def test_bad_input_is_one_sentence(r2: SimClusterSession) -> None:
    name = through_manager(r2, "bad", "--storage", next_lun())
    assert "nothing to ignore" in refused(r2, "vm", "repair", name, "--ignore")
    assert "does not exist" in refused(r2, "vm", "repair", "ghost")
    assert "does not exist" in refused(r2, "vm", "attach-iso", "ghost", "x.iso")
    usage = r2.cli("vm", "attach-disk", name, "--passthrough", "csv:Volume1")
    assert usage.exit_code == 2
    assert "not a disk to pass through" in " ".join(usage.stderr.replace("│", " ").split())
    assert "has no pass-through disk" in refused(r2, "vm", "detach-disk", name, "--passthrough", "lun:lun01")
    assert "does not exist" in refused(r2, "cluster", "groups", "nowhere")
    ok(r2, "vm", "start", name)
    assert "stopped" in refused(r2, "vm", "attach-disk", name, "--passthrough", "lun:lun29")
    ok(r2, "vm", "create", "plain", "--host", "standalone1", "--memory-mb", "64", "--no-start")
    assert "not highly available" in refused(
        r2, "host", "cluster-resource", "add", "standalone1", "plain", "Replica", "--type", "Generic Service"
    )


# ------------------------------------------------------------------------------ ESX


def esx_topology(level: str) -> dict:
    return {
        "version": 1,
        "vmm_version": level,
        "host_defaults": {
            "profile": "esx",
            "cpu": {
                "vendor": "AuthenticAMD",
                "model": "Opteron 2384",
                "features": ["sse3"],
                "cores": 4,
                "mhz": 2700,
            },
            "memory_mb": 16384,
            "disks": [{"name": "local1", "capacity_gb": 100}],
            "networks": [{"name": "VM Network", "bound_to": "vSwitch0", "vlan_id": 10}],
        },
        "clusters": [
            {
                "name": "esxc",
                "profile": "esx",
                "nodes": ["esx1", "esx2"],
                "luns": [{"name": f"lun{i:02d}", "capacity_gb": 50} for i in range(1, 5)],
            }
        ],
        "hosts": [
            {"name": "esx1"},
            {
                "name": "esx2",
                "networks": [
                    {"name": "VM Network", "bound_to": "vSwitch1", "vlan_id": 20},
                    {"name": "DMZ", "bound_to": "vSwitch1", "vlan_id": 30},
                ],
            },
        ],
    }


def test_an_esx_port_group_missing_on_a_host(tmp_path: Path, level: str, origin: str, make: Make) -> None:
    path = tmp_path / "topology.yaml"
    path.write_text(yaml.safe_dump(esx_topology(level)))
    with sim_cluster(path, tmp_path / "sim") as esx:
        # DMZ is on esx2 only; VM Network differs in switch and VLAN, which port groups may.
        name = make(
            esx, "dmz", "--storage", "lun:lun01", "--network", "DMZ", "--network", "VM Network", host="esx2"
        )
        shown = vm(esx, name)
        assert [r["cause"] for r in shown["status_reasons"]] == ["port_group_missing"]
        assert shown["status_reasons"][0]["detail"] == (
            "port group 'DMZ' is not common to every node of cluster esxc: missing on esx1"
        )
        ok(esx, "host", "network", "add", "esx1", "DMZ", "--bound-to", "vSwitch1", "--vlan", "31")
        assert "supported" in ok(esx, "vm", "repair", name).stdout and causes(esx, name) == []


def test_vmm_2008_places_no_vm_on_a_csv(tmp_path: Path) -> None:
    for cluster in session(tmp_path, "2008"):
        ok(cluster, "host", "storage", "add", "node1", "Shared1", "--kind", "csv", "--capacity-gb", "100")
        ok(cluster, "cluster", "refresh")
        assert "VMM 2008 does not support cluster shared volumes" in refused(
            cluster,
            "vm",
            "create",
            "c",
            "--ha",
            "--host",
            "node1",
            "--memory-mb",
            "64",
            "--storage",
            "csv:Shared1",
        )

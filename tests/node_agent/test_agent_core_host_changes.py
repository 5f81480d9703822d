"""The decisions on an administrator's changes to the host (core.host_changes), pure."""

from __future__ import annotations

import dataclasses

import pytest
from agent_testkit import host_config

from node_agent.core.config import NetworkSpec, Profile, VolumeKind, VolumeSpec, parse_host_config
from node_agent.core.errors import AlreadyExists, ConfigError, FailedPrecondition, InvalidArgument
from node_agent.core.host_changes import (
    NetworkUpdate,
    add_network,
    add_volume,
    changes_from_raw,
    changes_of,
    changes_to_raw,
    remove_network,
    remove_volume,
    update_network,
    with_changes,
)
from node_agent.core.vm import StorageKind, StorageRef, VmSpec


@pytest.fixture
def host(tmp_path):
    return parse_host_config(host_config(tmp_path))


def vm(vm_id: str, networks: tuple[str, ...] = (), storage: StorageRef | None = None) -> VmSpec:
    where = storage or StorageRef(StorageKind.LOCAL_DISK, "C")
    return VmSpec(vm_id, f"name-{vm_id}", 512, 1, 10, where, networks)


def test_kept_changes_read_back_equal_and_replace_the_files_lists(host) -> None:
    changed = add_network(host, NetworkSpec("Backend", "nic2", 7)).config
    changes = changes_of(changed)
    assert changes_from_raw(changes_to_raw(changes)) == changes
    assert with_changes(host, changes).networks == changed.networks


def test_kept_changes_are_checked_like_the_configuration(host) -> None:
    with pytest.raises(ConfigError, match=r"networks\[0\].vlan_id: must be between 0 and 4094"):
        changes_from_raw({"networks": [{"name": "x", "vlan_id": -3}]})
    with pytest.raises(ConfigError, match="'lun1' is listed twice"):
        changes_from_raw({"volumes": [{"name": "lun1", "kind": "lun", "capacity_gb": 1}] * 2})
    no_san = dataclasses.replace(host, san_root=None, volumes=())
    with pytest.raises(ConfigError, match="no SAN directory"):
        with_changes(no_san, changes_of(host))


def test_only_vms_connected_by_the_exact_name_are_disconnected(host) -> None:
    vms = [vm("a", ("External",)), vm("b", ("external",)), vm("c")]
    assert remove_network(host, "External", vms).disconnected == ("a",)
    assert update_network(host, "External", NetworkUpdate(vlan_id=3), vms).disconnected == ()
    assert update_network(host, "External", NetworkUpdate(new_name="LAN"), vms).disconnected == ("a",)


def test_a_rename_onto_another_network_is_refused(host) -> None:
    two = add_network(host, NetworkSpec("Backend", "", 0)).config
    taken = "new_name: host node1 already has a virtual network named 'Backend'"
    with pytest.raises(AlreadyExists, match=taken):
        update_network(two, "External", NetworkUpdate(new_name="Backend"), [])


def test_storage_rules(host) -> None:
    hyperv_2008 = dataclasses.replace(host, profile=Profile.HYPERV_2008)
    with pytest.raises(FailedPrecondition, match="has no cluster shared volumes"):
        add_volume(hyperv_2008, VolumeSpec("Volume9", VolumeKind.CSV, 10))
    both = add_volume(host, VolumeSpec("Volume1", VolumeKind.LUN, 10)).config
    with pytest.raises(InvalidArgument, match="sees both a CSV volume and a LUN named 'Volume1'; say which"):
        remove_volume(both, "Volume1", None, [])
    arriving = vm("x", storage=StorageRef(StorageKind.CSV, "Volume1"))
    with pytest.raises(FailedPrecondition, match="CSV volume Volume1 holds VM name-x of host node1"):
        remove_volume(both, "Volume1", VolumeKind.CSV, [arriving])
    assert [v.kind for v in remove_volume(both, "Volume1", VolumeKind.CSV, []).config.volumes] == [
        VolumeKind.LUN,
        VolumeKind.LUN,
    ]

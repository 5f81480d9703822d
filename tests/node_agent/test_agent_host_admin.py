"""HostAdminService against a real agent process: an administrator's changes to the
host's networks and SAN storage, what GetInventory and new VMs see afterwards, the
kept changes across a restart, a damaged kept file, and every refusal's status and
sentence. Also CreateVm's allow_shared_lun, which such an administrator sets."""

from __future__ import annotations

import json
from collections.abc import Callable

import grpc
import pytest
from agent_testkit import CALL_TIMEOUT_S, Agent, host_config, vm_spec

from havm.v1 import agent_pb2, agent_pb2_grpc, common_pb2

GIB = 1024**3
StartAgent = Callable[..., Agent]
INVALID, NOT_FOUND = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
EXISTS, PRECONDITION = grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.FAILED_PRECONDITION
LUN = common_pb2.STORAGE_KIND_LUN
CSV = common_pb2.STORAGE_KIND_CSV


def admin(agent: Agent) -> agent_pb2_grpc.HostAdminServiceStub:
    return agent_pb2_grpc.HostAdminServiceStub(agent.channel)


def add_network(agent: Agent, name: str, bound_to: str = "Intel 82576 #2", vlan_id: int = 0):
    request = agent_pb2.HostAdminServiceAddNetworkRequest(
        network=common_pb2.Network(name=name, bound_to=bound_to, vlan_id=vlan_id)
    )
    return admin(agent).AddNetwork(request, timeout=CALL_TIMEOUT_S)


def update_network(agent: Agent, name: str, **changes):
    request = agent_pb2.HostAdminServiceUpdateNetworkRequest(name=name, **changes)
    return admin(agent).UpdateNetwork(request, timeout=CALL_TIMEOUT_S)


def remove_network(agent: Agent, name: str):
    request = agent_pb2.HostAdminServiceRemoveNetworkRequest(name=name)
    return admin(agent).RemoveNetwork(request, timeout=CALL_TIMEOUT_S)


def add_volume(agent: Agent, name: str, kind: int = LUN, capacity_bytes: int = 50 * GIB):
    request = agent_pb2.HostAdminServiceAddVolumeRequest(
        volume=common_pb2.SharedVolume(name=name, kind=kind, capacity_bytes=capacity_bytes)
    )
    return admin(agent).AddVolume(request, timeout=CALL_TIMEOUT_S)


def remove_volume(agent: Agent, name: str, kind: int = common_pb2.STORAGE_KIND_UNSPECIFIED):
    request = agent_pb2.HostAdminServiceRemoveVolumeRequest(name=name, kind=kind)
    return admin(agent).RemoveVolume(request, timeout=CALL_TIMEOUT_S)


def networks(host: common_pb2.HostInfo) -> dict[str, tuple[str, int]]:
    return {n.name: (n.bound_to, n.vlan_id) for n in host.networks}


def volumes(host: common_pb2.HostInfo) -> dict[str, int]:
    return {f"{common_pb2.StorageKind.Name(v.kind)}:{v.name}": v.capacity_bytes // GIB for v in host.volumes}


def refused(call, *args, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(*args, **kwargs)
    return info.value


def test_network_changes_show_in_the_answer_and_the_inventory(agent: Agent) -> None:
    added = add_network(agent, "Backend", "Intel 82576 #2", 5)
    assert networks(added.host)["Backend"] == ("Intel 82576 #2", 5)
    assert added.host.networks[-1].kind == common_pb2.NETWORK_KIND_VIRTUAL_NETWORK

    changed = update_network(agent, "Backend", vlan_id=7, bound_to="Intel 82576 #3")
    assert networks(changed.host)["Backend"] == ("Intel 82576 #3", 7)
    # A rename that changes only the case: names are compared exactly.
    renamed = update_network(agent, "Backend", new_name="BACKEND")
    assert "BACKEND" in networks(renamed.host) and "Backend" not in networks(renamed.host)
    assert list(renamed.disconnected_vms) == []

    removed = remove_network(agent, "BACKEND")
    assert networks(removed.host) == {"External": ("Broadcom BCM5709C #1", 0)}
    assert networks(agent.inventory().host) == networks(removed.host)


def test_a_vm_created_or_checked_after_a_change_sees_the_new_network(agent: Agent) -> None:
    spec = vm_spec("vm-new", "web-new", networks=["External", "Backend"])
    error = refused(agent.create, spec)
    assert error.code() == INVALID
    check = agent_pb2.AgentServiceCheckCompatibilityRequest(spec=spec)
    assert not agent.stub.CheckCompatibility(check, timeout=CALL_TIMEOUT_S).compatible

    add_network(agent, "Backend")
    assert agent.stub.CheckCompatibility(check, timeout=CALL_TIMEOUT_S).compatible
    assert list(agent.create(spec).spec.networks) == ["External", "Backend"]


def test_removing_a_network_a_vm_uses_is_allowed_and_names_the_vm(agent: Agent) -> None:
    agent.create(vm_spec("vm-1", "web1", networks=["External"]))
    agent.create(vm_spec("vm-2", "web2", networks=[]))
    removed = remove_network(agent, "External")
    assert [vm.spec.name for vm in removed.disconnected_vms] == ["web1"]
    assert list(removed.host.networks) == []
    # The VM stays, with the name of the network it was connected to.
    assert list(agent.get("vm-1").spec.networks) == ["External"]


def test_a_rename_disconnects_the_vms_connected_by_the_old_name(agent: Agent) -> None:
    agent.create(vm_spec("vm-1", "web1", networks=["External"]))
    renamed = update_network(agent, "External", new_name="external")
    assert [vm.spec.id for vm in renamed.disconnected_vms] == ["vm-1"]


def test_volumes_become_visible_and_a_volume_holding_a_vm_stays(agent: Agent) -> None:
    added = add_volume(agent, "lun7", LUN, 40 * GIB)
    assert volumes(added.host)["STORAGE_KIND_LUN:lun7"] == 40
    assert volumes(agent.inventory().host)["STORAGE_KIND_LUN:lun7"] == 40
    agent.create(vm_spec("vm-7", "db7", storage=(LUN, "lun7"), disk_gb=10))

    error = refused(remove_volume, agent, "lun7")
    assert error.code() == PRECONDITION
    assert error.details() == (
        "LUN lun7 holds VM db7 of host node1; move or delete them before the host stops seeing it"
    )
    agent.delete("vm-7")
    removed = remove_volume(agent, "lun7", LUN)
    assert "STORAGE_KIND_LUN:lun7" not in volumes(removed.host)

    csv = add_volume(agent, "Volume2", CSV, 100 * GIB)
    assert volumes(csv.host)["STORAGE_KIND_CSV:Volume2"] == 100
    assert (agent.state_dir.parent.parent / "san" / "csv" / "Volume2").is_dir()


def test_a_host_without_a_san_cannot_see_san_storage(start_agent: StartAgent, tmp_path) -> None:
    agent = start_agent(host_config(tmp_path, volumes=[], san_root=None))
    error = refused(add_volume, agent, "lun1")
    assert error.code() == PRECONDITION
    assert error.details() == (
        "host node1 has no SAN directory (san_root is not set in its configuration): it cannot see LUN lun1"
    )


def test_the_changes_outlive_a_restart_and_leave_the_configuration_file_alone(
    start_agent: StartAgent, tmp_path
) -> None:
    config = host_config(tmp_path)
    agent = start_agent(config)
    file_before = agent.config_path.read_text()
    add_network(agent, "Backend", "Intel 82576 #2", 7)
    update_network(agent, "External", vlan_id=12)
    add_volume(agent, "lun9", LUN, 30 * GIB)
    remove_volume(agent, "Volume1")
    changed = agent.inventory().host
    assert agent.terminate() == 0

    again = start_agent(config, state_dir=agent.state_dir)
    host = again.inventory().host
    assert (
        networks(host)
        == networks(changed)
        == {
            "External": ("Broadcom BCM5709C #1", 12),
            "Backend": ("Intel 82576 #2", 7),
        }
    )
    assert volumes(host) == volumes(changed) == {"STORAGE_KIND_LUN:lun1": 200, "STORAGE_KIND_LUN:lun9": 30}
    assert again.config_path.read_text() == file_before


@pytest.mark.parametrize("damage", ["{not json", '{"networks": [{"name": "x", "vlan_id": 9999}]}'])
def test_damaged_kept_changes_are_one_log_line_and_the_configuration(
    start_agent: StartAgent, tmp_path, damage: str
) -> None:
    config = host_config(tmp_path)
    state_dir = tmp_path / "hosts" / "node1"
    state_dir.mkdir(parents=True)
    (state_dir / "host-changes.json").write_text(damage)
    agent = start_agent(config, state_dir=state_dir)
    assert networks(agent.inventory().host) == {"External": ("Broadcom BCM5709C #1", 0)}
    lines = [line for line in agent.log().splitlines() if "kept changes are ignored" in line]
    assert len(lines) == 1, agent.log()
    assert "host-changes.json" in lines[0]
    # The next change replaces the damaged file.
    add_network(agent, "Backend")
    kept = json.loads((state_dir / "host-changes.json").read_text())
    assert [n["name"] for n in kept["networks"]] == ["External", "Backend"]


BAD_NETWORK_CALLS = [
    (lambda a: add_network(a, ""), INVALID, "network.name: is required"),
    (lambda a: add_network(a, " Backend"), INVALID, "network.name: ' Backend' must"),
    (lambda a: add_network(a, "External"), EXISTS, "host node1 already has a virtual"),
    (
        lambda a: add_network(a, "Backend", vlan_id=-1),
        INVALID,
        "network.vlan_id: must be between 0 and 4094 (0 is untagged), got -1",
    ),
    (
        lambda a: add_network(a, "Backend", vlan_id=4095),
        INVALID,
        "network.vlan_id: must be between 0 and 4094",
    ),
    (
        lambda a: remove_network(a, "external"),
        NOT_FOUND,
        "host node1 has no virtual network named 'external' (names are compared exactly: it has 'External')",
    ),
    (lambda a: remove_network(a, ""), INVALID, "name: is required"),
    (lambda a: update_network(a, "Nope", vlan_id=1), NOT_FOUND, "host node1 has no virtual"),
    (lambda a: update_network(a, "External"), INVALID, "new_name, bound_to, vlan_id:"),
    (lambda a: update_network(a, "External", vlan_id=5000), INVALID, "vlan_id: must"),
    (lambda a: update_network(a, "External", new_name=""), INVALID, "new_name: is"),
]
BAD_VOLUME_CALLS = [
    (lambda a: add_volume(a, ""), INVALID, "volume.name: is required"),
    (lambda a: add_volume(a, "my lun"), INVALID, "volume.name: 'my lun' must"),
    (
        lambda a: add_volume(a, "lun5", common_pb2.STORAGE_KIND_LOCAL_DISK),
        INVALID,
        "volume.kind: must be STORAGE_KIND_CSV or STORAGE_KIND_LUN, got STORAGE_KIND_LOCAL_DISK",
    ),
    (
        lambda a: add_volume(a, "lun5", capacity_bytes=GIB + 1),
        INVALID,
        "volume.capacity_bytes: must be a whole number of GiB",
    ),
    (lambda a: add_volume(a, "lun1"), EXISTS, "host node1 already sees LUN lun1"),
    (lambda a: remove_volume(a, "lun2"), NOT_FOUND, "host node1 sees no CSV volume or LUN"),
    (lambda a: remove_volume(a, "lun1", CSV), NOT_FOUND, "host node1 sees no CSV volume named"),
]


def test_bad_input_is_refused_with_a_sentence_naming_it(agent: Agent) -> None:
    # One agent for them all: none of them changes the host.
    for call, code, sentence in BAD_NETWORK_CALLS + BAD_VOLUME_CALLS:
        error = refused(call, agent)
        assert (error.code(), error.details()[: len(sentence)]) == (code, sentence), error.details()
        assert "\n" not in error.details()
    assert networks(agent.inventory().host) == {"External": ("Broadcom BCM5709C #1", 0)}


def test_a_lun_is_shared_only_when_the_creator_allows_it(agent: Agent) -> None:
    agent.create(vm_spec("vm-1", "web1", storage=(LUN, "lun1")))
    second = vm_spec("vm-2", "web2", storage=(LUN, "lun1"))
    error = refused(agent.create, second)
    assert error.code() == PRECONDITION
    assert "LUN lun1 already holds VM vm-1" in error.details()

    request = agent_pb2.AgentServiceCreateVmRequest(spec=second, allow_shared_lun=True)
    created = agent.stub.CreateVm(request, timeout=CALL_TIMEOUT_S).vm
    assert (created.spec.id, created.state) == ("vm-2", common_pb2.VM_STATE_STOPPED)
    assert sorted(vm.spec.id for vm in agent.inventory().vms) == ["vm-1", "vm-2"]

"""What a ManagerService request asks for, as the core's values: every enum, policy,
storage and settings change a client sends, checked field by field.

Kept apart from proto_mapping (records going out, agents' reports coming in) because
these are the manager's own inputs: each refusal is an InvalidArgumentError naming the
field, so that bad input is one sentence to the client.
"""

from __future__ import annotations

from collections.abc import Sequence

from havm.v1 import agent_pb2, common_pb2, manager_pb2
from manager.adapters.proto_mapping import from_proto_enum, storage_from_proto
from manager.core.errors import InvalidArgumentError
from manager.core.maintenance import MaintenanceMode
from manager.core.model import (
    DEFAULT_FAILOVER_PERIOD_S,
    FailbackMode,
    FailoverPolicy,
    RestartPriority,
    StorageLocation,
    VmOperation,
)
from manager.core.operations import SettingsChange
from manager.core.repair import RepairAction
from manager.core.shutdown import ShutdownAction
from manager.core.transfer import Transfer


def operation_from_proto(number: int) -> VmOperation | None:
    if number == agent_pb2.VM_OPERATION_UNSPECIFIED:
        return None
    try:
        return from_proto_enum(number, "VM_OPERATION", agent_pb2.VmOperation, VmOperation)
    except ValueError:
        return None


def requested_storage_from_proto(storage: common_pb2.StorageLocation) -> StorageLocation:
    """The storage a CreateVm asks for; a kind the manager does not know is refused."""
    location = storage_from_proto(storage)
    if location is None or storage.kind == common_pb2.STORAGE_KIND_UNSPECIFIED:
        raise InvalidArgumentError("storage.kind: must be csv, lun or local_disk")
    if not storage.name:
        raise InvalidArgumentError("storage.name: must not be empty")
    return location


def restart_priority_from_proto(number: int) -> RestartPriority:
    """Unset means medium; a number the manager does not know is refused."""
    if number == common_pb2.RESTART_PRIORITY_UNSPECIFIED:
        return RestartPriority.MEDIUM
    try:
        priority = from_proto_enum(number, "RESTART_PRIORITY", common_pb2.RestartPriority, RestartPriority)
    except ValueError:
        priority = None
    if priority is None:
        raise InvalidArgumentError("restart_priority: must be high, medium, low or none")
    return priority


def policy_from_proto(pb: manager_pb2.FailoverPolicy) -> FailoverPolicy:
    """The policy as sent; field checks that need no cluster (hours, counts) happen here."""
    if pb.failback == manager_pb2.FAILBACK_MODE_UNSPECIFIED:
        failback = FailbackMode.NEVER
    else:
        found = from_proto_enum(pb.failback, "FAILBACK_MODE", manager_pb2.FailbackMode, FailbackMode)
        if found is None:
            raise InvalidArgumentError("failover_policy.failback: must be never, immediate or window")
        failback = found
    for field, hour in (
        ("failback_window_start_hour", pb.failback_window_start_hour),
        ("failback_window_end_hour", pb.failback_window_end_hour),
    ):
        if not 0 <= hour <= 23:
            raise InvalidArgumentError(f"failover_policy.{field}: must be an hour from 0 to 23, got {hour}")
    window = (pb.failback_window_start_hour, pb.failback_window_end_hour)
    if failback is FailbackMode.WINDOW and window[0] == window[1]:
        raise InvalidArgumentError(
            "failover_policy: a failback window needs two different hours (start and end)"
        )
    if pb.HasField("max_failovers") and pb.max_failovers < 0:
        raise InvalidArgumentError(
            f"failover_policy.max_failovers: must be 0 or more, got {pb.max_failovers}"
        )
    if pb.failover_period_s < 0:
        raise InvalidArgumentError(
            f"failover_policy.failover_period_s: must be 0 or more, got {pb.failover_period_s}"
        )
    return FailoverPolicy(
        preferred_owners=tuple(pb.preferred_owners),
        possible_owners=tuple(pb.possible_owners),
        max_failovers=pb.max_failovers if pb.HasField("max_failovers") else None,
        failover_period_s=pb.failover_period_s or DEFAULT_FAILOVER_PERIOD_S,
        failback=failback,
        failback_window=window if failback is FailbackMode.WINDOW else None,
    )


def no_converge_from_proto(number: int) -> str | None:
    """None for unset (the topology's policy applies); a number the manager does not know is refused."""
    if number == manager_pb2.NO_CONVERGE_POLICY_UNSPECIFIED:
        return None
    if number == manager_pb2.NO_CONVERGE_POLICY_FAIL:
        return "fail"
    if number == manager_pb2.NO_CONVERGE_POLICY_QUICK:
        return "quick"
    raise InvalidArgumentError("no_converge: must be fail or quick")


_TRANSFERS = {
    manager_pb2.TRANSFER_UNSPECIFIED: Transfer.AUTO,
    manager_pb2.TRANSFER_AUTO: Transfer.AUTO,
    manager_pb2.TRANSFER_SAN: Transfer.SAN,
    manager_pb2.TRANSFER_NETWORK: Transfer.NETWORK,
}


def transfer_from_proto(number: int) -> Transfer:
    """AUTO for unset; a number the manager does not know is refused."""
    if number not in _TRANSFERS:
        raise InvalidArgumentError("transfer: must be auto, san or network")
    return _TRANSFERS[number]


def maintenance_mode_from_proto(number: int) -> MaintenanceMode | None:
    """None (the profile's default) for UNSPECIFIED; INVALID_ARGUMENT for an unknown number."""
    if number == manager_pb2.MAINTENANCE_MODE_UNSPECIFIED:
        return None
    if number not in manager_pb2.MaintenanceMode.values():
        raise InvalidArgumentError(f"mode: unknown maintenance mode {number}")
    return from_proto_enum(number, "MAINTENANCE_MODE", manager_pb2.MaintenanceMode, MaintenanceMode)


def repair_action_from_proto(number: int) -> RepairAction:
    found = None
    if number != manager_pb2.REPAIR_ACTION_UNSPECIFIED and number in manager_pb2.RepairAction.values():
        found = from_proto_enum(number, "REPAIR_ACTION", manager_pb2.RepairAction, RepairAction)
    if found is None:
        raise InvalidArgumentError("action: must be retry, undo, ignore or refresh")
    return found


def shutdown_action_from_proto(number: int) -> ShutdownAction:
    """Unset means save (Windows Server 2008 R2's default); an unknown number is refused."""
    if number == manager_pb2.SHUTDOWN_ACTION_UNSPECIFIED:
        return ShutdownAction.SAVE
    found = None
    if number in manager_pb2.ShutdownAction.values():
        found = from_proto_enum(number, "SHUTDOWN_ACTION", manager_pb2.ShutdownAction, ShutdownAction)
    if found is None:
        raise InvalidArgumentError("action: must be save, shutdown or live")
    return found


def settings_change_from_proto(request: manager_pb2.UpdateVmRequest) -> SettingsChange:
    """The settings UpdateVm asks to change; a pass-through disk names a LUN or a local disk."""

    def disks(field: str, items: Sequence[common_pb2.StorageLocation]) -> tuple[StorageLocation, ...]:
        found = []
        for i, item in enumerate(items):
            disk = storage_from_proto(item)
            if disk is None or not disk.name:
                raise InvalidArgumentError(
                    f"{field}[{i}]: must name a LUN or a local disk (lun:NAME, local:NAME)"
                )
            found.append(disk)
        return tuple(found)

    return SettingsChange(
        processor_compatibility=(
            request.processor_compatibility if request.HasField("processor_compatibility") else None
        ),
        iso_image=request.iso_image if request.HasField("iso_image") else None,
        attach_passthrough=disks("attach_passthrough", request.attach_passthrough),
        detach_passthrough=disks("detach_passthrough", request.detach_passthrough),
    )

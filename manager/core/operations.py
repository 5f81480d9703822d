"""Which power operations a VM's recorded state allows, and what they lead to.

Purely computational: the VM service checks a request here before it creates a job,
and again when the job gets the VM's lock (another job may have changed it meanwhile).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from manager.core.errors import FailedPreconditionError, InvalidArgumentError
from manager.core.model import HostRecord, StorageKind, StorageLocation, VmOperation, VmRecord
from manager.core.states import VmState

S = VmState
# A Windows path's limit (MAX_PATH).
MAX_ISO_PATH = 260

ALLOWED_FROM: dict[VmOperation, frozenset[VmState]] = {
    VmOperation.START: frozenset({S.STOPPED, S.SAVED, S.FAILED}),
    VmOperation.SHUTDOWN: frozenset({S.RUNNING}),
    VmOperation.TURN_OFF: frozenset({S.RUNNING, S.PAUSED, S.STARTING, S.FAILED}),
    VmOperation.SAVE: frozenset({S.RUNNING, S.PAUSED}),
    VmOperation.RESTORE: frozenset({S.SAVED}),
    VmOperation.PAUSE: frozenset({S.RUNNING}),
    VmOperation.RESUME: frozenset({S.PAUSED}),
}

# The state recorded while the agent works on the operation, when there is one.
IN_PROGRESS: dict[VmOperation, VmState] = {
    VmOperation.START: S.STARTING,
    VmOperation.RESTORE: S.STARTING,
    VmOperation.SAVE: S.SAVING,
}

# States from which a VM may be deleted: nothing of it runs anywhere (a failed VM
# holds no memory; deleting it clears the failure with its files).
DELETABLE = frozenset({S.STOPPED, S.SAVED, S.FAILED, S.MISSING, S.WAITING})

# The verb phrase of each operation after "cannot".
_VERBS: dict[VmOperation, str] = {
    VmOperation.START: "be started",
    VmOperation.SHUTDOWN: "be shut down",
    VmOperation.TURN_OFF: "be turned off",
    VmOperation.SAVE: "be saved",
    VmOperation.RESTORE: "be restored",
    VmOperation.PAUSE: "be paused",
    VmOperation.RESUME: "be resumed",
}

_HINTS: dict[VmOperation, str] = {
    VmOperation.START: "stop it first",
    VmOperation.SHUTDOWN: "start it first",
    VmOperation.TURN_OFF: "it is not running",
    VmOperation.SAVE: "start it first",
    VmOperation.RESTORE: "only a saved VM can be restored",
    VmOperation.PAUSE: "only a running VM can be paused",
    VmOperation.RESUME: "only a paused VM can be resumed",
}


def _unreachable(vm: VmRecord) -> str | None:
    if vm.state is S.UNKNOWN:
        return f"VM {vm.name} is unknown: its host {vm.host} does not answer"
    if vm.state is S.MISSING:
        return f"VM {vm.name} is missing: its host {vm.host} no longer reports it"
    if vm.state is S.CREATING:
        return f"VM {vm.name} is still being created on host {vm.host}"
    return None


def check_not_migrating(vm: VmRecord) -> None:
    """A migrating VM belongs to its migration until it ends."""
    if vm.migration_id:
        raise FailedPreconditionError(
            f"VM {vm.name} is migrating (migration {vm.migration_id}): wait until the migration ends"
        )


def check_operation(vm: VmRecord, operation: VmOperation) -> None:
    """Raise FailedPreconditionError when the VM's state does not allow the operation."""
    check_not_migrating(vm)
    reason = _unreachable(vm)
    if reason is not None:
        raise FailedPreconditionError(reason)
    if vm.state not in ALLOWED_FROM[operation]:
        raise FailedPreconditionError(
            f"VM {vm.name} is {vm.state.value}: it cannot {_VERBS[operation]} ({_HINTS[operation]})"
        )


def check_not_stored(vm: VmRecord, host: HostRecord | None) -> None:
    """A VM stored in the library runs nowhere until it is deployed onto a host."""
    if host is not None and host.capabilities.library_server:
        raise FailedPreconditionError(
            f"VM {vm.name} is stored in library server {host.name}, which runs no VM: deploy it "
            f"onto a host first (`havm vm deploy {vm.name} --to HOST`)"
        )


def check_delete(vm: VmRecord) -> None:
    check_not_migrating(vm)
    if vm.state in DELETABLE:
        return
    if vm.state is S.UNKNOWN:
        raise FailedPreconditionError(
            f"VM {vm.name} is unknown: its host {vm.host} does not answer, so it may still run"
        )
    if vm.state is S.CREATING:
        raise FailedPreconditionError(f"VM {vm.name} is still being created on host {vm.host}")
    raise FailedPreconditionError(f"VM {vm.name} is {vm.state.value}: stop it first")


@dataclass(frozen=True)
class SettingsChange:
    """What `vm set`, `vm attach-disk|detach-disk` and `vm attach-iso|detach-iso` change."""

    processor_compatibility: bool | None = None  # None leaves it
    iso_image: str | None = None  # None leaves it; "" ejects the image
    attach_passthrough: tuple[StorageLocation, ...] = ()
    detach_passthrough: tuple[StorageLocation, ...] = ()

    @property
    def empty(self) -> bool:
        return self == SettingsChange()


def passthrough_after(vm: VmRecord, change: SettingsChange) -> tuple[StorageLocation, ...] | None:
    """The VM's pass-through disks once the change is made; None when they stay as they are.

    Raises InvalidArgumentError or FailedPreconditionError naming the disk."""
    if not change.attach_passthrough and not change.detach_passthrough:
        return None
    disks = list(vm.passthrough_disks)
    for disk in change.detach_passthrough:
        if disk not in disks:
            raise FailedPreconditionError(f"VM {vm.name} has no pass-through disk {disk_label(disk)}")
        disks.remove(disk)
    for disk in change.attach_passthrough:
        if disk.kind is StorageKind.CSV:
            raise InvalidArgumentError(
                f"passthrough: {disk.name} is a CSV volume, not a disk: pass through a LUN or a local disk"
            )
        if disk in disks:
            raise FailedPreconditionError(f"VM {vm.name} already has pass-through disk {disk_label(disk)}")
        if disk == vm.storage:
            raise InvalidArgumentError(f"passthrough: {disk_label(disk)} holds the VM's own files")
        disks.append(disk)
    return tuple(disks)


def check_passthrough_free(vm: VmRecord, change: SettingsChange, vms: Sequence[VmRecord]) -> None:
    """A LUN to pass through must be nobody else's: no other VM's files, no other VM's
    raw disk, on whatever host (two guests writing one disk corrupt it)."""
    for disk in change.attach_passthrough:
        if disk.kind is not StorageKind.LUN:
            continue
        users = [other.name for other in vms if other.id != vm.id and disk.name in other.luns()]
        if users:
            raise FailedPreconditionError(
                f"LUN {disk.name} is used by VM {', '.join(users)}: "
                f"it cannot be passed through to VM {vm.name}"
            )


def disk_label(disk: StorageLocation) -> str:
    """`lun:pt1`, `local:D`: a disk as the CLI names it."""
    return f"{'local' if disk.kind is StorageKind.LOCAL_DISK else disk.kind.value}:{disk.name}"


def check_update(vm: VmRecord, change: SettingsChange) -> None:
    """Processor compatibility and pass-through disks change only while the VM is off
    (the guest saw its CPU and its disks); an ISO image in any state."""
    check_not_migrating(vm)
    stopped_only = []
    if change.processor_compatibility is not None:
        stopped_only.append("processor compatibility")
    if passthrough_after(vm, change) is not None:
        stopped_only.append("pass-through disks")
    if stopped_only and vm.state is not S.STOPPED:
        raise FailedPreconditionError(
            f"VM {vm.name} is {vm.state.value}: {' and '.join(stopped_only)} can be changed only while "
            "the VM is stopped (shut it down first)"
        )
    if change.iso_image is not None and len(change.iso_image) > MAX_ISO_PATH:
        raise InvalidArgumentError(
            f"iso_image: at most {MAX_ISO_PATH} characters, got {len(change.iso_image)}"
        )


def settings_summary(vm: VmRecord, change: SettingsChange) -> str:
    """What the VM's changed settings are now, for the job's message."""
    parts = []
    if change.processor_compatibility is not None:
        parts.append(f"processor compatibility {'on' if vm.processor_compatibility else 'off'}")
    if change.attach_passthrough or change.detach_passthrough:
        disks = ", ".join(disk_label(d) for d in vm.passthrough_disks) or "none"
        parts.append(f"pass-through disks {disks}")
    if change.iso_image is not None:
        parts.append(f"ISO image {vm.iso_image}" if vm.iso_image else "no ISO image")
    return "; ".join(parts)


def check_convertible(vm: VmRecord, disk: StorageLocation | None) -> StorageLocation:
    """The pass-through disk to convert to a virtual disk: one of the VM's, the VM stopped."""
    if disk is None:
        raise InvalidArgumentError(
            "disk: must name one of the VM's pass-through disks (lun:NAME or local:NAME)"
        )
    check_not_migrating(vm)
    if disk not in vm.passthrough_disks:
        have = ", ".join(disk_label(d) for d in vm.passthrough_disks) or "none"
        raise FailedPreconditionError(
            f"VM {vm.name} has no pass-through disk {disk_label(disk)} (its pass-through disks: {have})"
        )
    if vm.state is not S.STOPPED:
        raise FailedPreconditionError(
            f"VM {vm.name} is {vm.state.value}: a pass-through disk is converted with the VM stopped "
            f"(`havm vm stop {vm.name}`)"
        )
    return disk

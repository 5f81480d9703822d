"""Converting a pass-through disk to a virtual disk: what may be converted, and what the
VM is afterwards.

VMM converts a pass-through disk (a LUN or a local disk handed to the guest whole) into
a virtual disk file before the VM moves where the disk cannot follow: to the library or
a standalone host under VMM 2008, or anywhere for a local disk. The VM must be stopped.
The disk's blocks are copied into a file in the VM's directory, beside its system disk;
afterwards the VM passes the disk through no longer and has that file as a data disk,
which moves wherever its files move. The pass-through disk itself keeps its data, as a
physical disk would. Purely computational.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from node_agent.core.errors import FailedPrecondition
from node_agent.core.power import PowerState
from node_agent.core.views import VmView
from node_agent.core.vm import DataDisk, StorageKind, StorageRef, VmSpec

_PREFIXES = {StorageKind.LUN: "lun", StorageKind.LOCAL_DISK: "local"}


def data_disk_file(disk: StorageRef) -> str:
    """The converted disk's file name in the VM's directory: "lun-pt1.vhd", "local-D.vhd"."""
    return f"{_PREFIXES[disk.kind]}-{disk.name}.vhd"


def check_convertible(spec: VmSpec, state: PowerState, migrating: bool, disk: StorageRef) -> None:
    """FailedPrecondition naming why the VM's disk cannot be converted now."""
    if disk not in spec.passthrough_disks:
        have = ", ".join(f"{d.kind.label} {d.name}" for d in spec.passthrough_disks) or "none"
        raise FailedPrecondition(
            f"VM {spec.label} passes no {disk.kind.label} {disk.name} through "
            f"(its pass-through disks: {have})"
        )
    if migrating:
        raise FailedPrecondition(f"VM {spec.label} is being moved; convert its disk once it has arrived")
    if state is not PowerState.STOPPED:
        raise FailedPrecondition(
            f"VM {spec.label} is {state.value}: a pass-through disk is converted with the VM stopped "
            f"(`havm vm stop {spec.label}`)"
        )


def converted_spec(spec: VmSpec, disk: StorageRef, size_bytes: int) -> VmSpec:
    """The VM once `disk` is a virtual disk of `size_bytes` in its directory."""
    data = DataDisk(data_disk_file(disk), size_bytes, disk)
    return replace(
        spec,
        passthrough_disks=tuple(d for d in spec.passthrough_disks if d != disk),
        data_disks=(*(d for d in spec.data_disks if d.file != data.file), data),
    )


@dataclass(frozen=True)
class ConversionProgress:
    bytes_copied: int
    bytes_total: int
    mb_per_s: float
    # On the last update only: the VM with its new data disk.
    vm: VmView | None = None

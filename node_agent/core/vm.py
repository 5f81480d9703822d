"""A VM's configuration and the checks a host makes before it holds or starts one.

Validation of a VmSpec against this host, memory accounting and the storage rules
(visibility, room, one VM per LUN unless an administrator on the host shares one) are
decisions; the app gathers the facts (which VMs hold memory, what the files occupy)
and asks here.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

from node_agent.core.config import SAFE_NAME, HostConfig, VolumeKind
from node_agent.core.errors import (
    FailedPrecondition,
    InvalidArgument,
    ResourceExhausted,
)

GIB = 1024**3
DEFAULT_DIRTY_RATE_MB_PER_S = 1.0
DEFAULT_JOURNAL_WRITES_PER_S = 2.0


class StorageKind(enum.Enum):
    """Where a VM's files live."""

    LOCAL_DISK = "local_disk"  # a disk of this host; no other host sees it
    CSV = "csv"  # a cluster shared volume on the SAN
    LUN = "lun"  # a shared LUN on the SAN, one VM at a time

    @property
    def label(self) -> str:
        return {"local_disk": "local disk", "csv": "CSV volume", "lun": "LUN"}[self.value]


# A data disk's file in the VM's directory: what its pass-through disk was, "lun-pt1.vhd"
# or "local-D.vhd"; never a path, never the system disk's name.
DATA_DISK_FILE = re.compile(r"^(lun|local)-[A-Za-z0-9][A-Za-z0-9._-]{0,127}\.vhd$")


@dataclass(frozen=True)
class StorageRef:
    kind: StorageKind
    name: str


@dataclass(frozen=True)
class ClusterResource:
    """A resource an administrator added to a highly available VM's cluster group."""

    name: str
    type: str


@dataclass(frozen=True)
class DataDisk:
    """A virtual disk file of the VM beside its system disk: a pass-through disk it
    converted (core.disk_conversion)."""

    file: str  # its name in the VM's directory
    size_bytes: int
    converted_from: StorageRef


@dataclass(frozen=True)
class Workload:
    """What the guest does while running."""

    dirty_rate_mb_per_s: float = DEFAULT_DIRTY_RATE_MB_PER_S
    journal_writes_per_s: float = DEFAULT_JOURNAL_WRITES_PER_S


@dataclass(frozen=True)
class VmSpec:
    id: str
    name: str
    memory_mb: int
    cpus: int
    disk_gb: int
    storage: StorageRef
    networks: tuple[str, ...] = ()
    highly_available: bool = False
    workload: Workload | None = None
    # Processor compatibility mode: the guest sees only its vendor's baseline features.
    processor_compatibility: bool = False
    # Disks handed to the guest whole: LUNs this host sees or its local disks
    # (core.vm_devices has their rules). Changed only while the VM is stopped.
    passthrough_disks: tuple[StorageRef, ...] = ()
    # The ISO image in the DVD drive; empty when the drive is empty. Changed in any state.
    iso_image: str = ""
    # Resources added to the VM's cluster group beside its own (core.cluster_group).
    cluster_resources: tuple[ClusterResource, ...] = ()
    # Virtual disks beside the system disk, in the VM's directory; they move with it.
    data_disks: tuple[DataDisk, ...] = ()

    @property
    def label(self) -> str:
        """How sentences name the VM."""
        return self.name or self.id

    @property
    def effective_workload(self) -> Workload:
        return self.workload or Workload()

    @property
    def memory_pages(self) -> int:
        return self.memory_mb * 256


def validate_spec(spec: VmSpec, host: HostConfig) -> None:
    """Check a VmSpec against this host; raise with a sentence naming the field.

    Purely computational. Storage room and LUN occupancy need the files and are
    checked by `check_storage_room` and `check_lun_free`.
    """
    if not spec.id:
        raise InvalidArgument("spec.id: is required")
    if not SAFE_NAME.match(spec.id):
        raise InvalidArgument(f"spec.id: {spec.id!r} must be letters, digits, '.', '_' or '-' (at most 128)")
    if not spec.name.strip():
        raise InvalidArgument(f"spec.name: is required (VM {spec.id})")
    if spec.memory_mb <= 0:
        raise InvalidArgument(f"spec.memory_mb: VM {spec.label} needs a positive amount of memory")
    runs = not host.profile.traits.library_server  # a library server only stores VMs
    if runs and not 1 <= spec.cpus <= host.cpu.cores:
        raise InvalidArgument(
            f"spec.cpus: VM {spec.label} asks for {spec.cpus} virtual processors; "
            f"host {host.name} allows 1 to {host.cpu.cores}"
        )
    if spec.disk_gb <= 0:
        raise InvalidArgument(f"spec.disk_gb: VM {spec.label} needs a positive disk size")
    for net in spec.networks:
        if runs and host.network(net) is None:
            raise InvalidArgument(
                f"spec.networks: host {host.name} has no {host.profile.network_term} named {net!r}"
            )
    if spec.workload is not None:
        limit = host.settings.max_guest_rate
        _check_rate("dirty_rate_mb_per_s", spec.workload.dirty_rate_mb_per_s, limit)
        _check_rate("journal_writes_per_s", spec.workload.journal_writes_per_s, limit)
    for i, data in enumerate(spec.data_disks):
        if not DATA_DISK_FILE.match(data.file) or data.file in (f.file for f in spec.data_disks[:i]):
            raise InvalidArgument(
                f"spec.data_disks[{i}].file: {data.file!r} must be a unique KIND-NAME.vhd file name"
            )
        if data.size_bytes <= 0:
            raise InvalidArgument(f"spec.data_disks[{i}].size_bytes: must be positive, got {data.size_bytes}")
    check_storage_visible(spec.storage, host)


def check_runs_vms(host: HostConfig, vm_label: str, action: str) -> None:
    """A library server stores VMs at rest and runs none: FailedPrecondition for
    `action` (what would run VM `vm_label` here), naming the way out."""
    if host.profile.traits.library_server:
        raise FailedPrecondition(
            f"host {host.name} is a library server: it stores VMs and runs none, so it cannot "
            f"{action} VM {vm_label} (deploy the VM onto a host first)"
        )


def _check_rate(name: str, value: float, limit: float) -> None:
    # NaN fails every comparison, so it is caught by asking what a good rate is.
    if not (math.isfinite(value) and 0 <= value <= limit):
        raise InvalidArgument(
            f"spec.workload.{name}: must be a finite number from 0 to {limit:g}, got {value:g}"
        )


def check_storage_visible(storage: StorageRef, host: HostConfig) -> int:
    """Return the capacity in bytes of a disk or volume this host can see."""
    if not storage.name:
        raise InvalidArgument("spec.storage.name: must name a local disk, CSV volume or LUN")
    if storage.kind is StorageKind.LOCAL_DISK:
        disk = host.disk(storage.name)
        if disk is None:
            raise FailedPrecondition(f"host {host.name} has no local disk {storage.name}")
        return disk.capacity_gb * GIB
    kind = VolumeKind.CSV if storage.kind is StorageKind.CSV else VolumeKind.LUN
    volume = host.volume(storage.name, kind)
    if volume is None:
        raise FailedPrecondition(f"host {host.name} cannot see {storage.kind.label} {storage.name}")
    return volume.capacity_gb * GIB


def check_storage_room(spec: VmSpec, capacity_bytes: int, used_bytes: int) -> None:
    """A new VM's disk must fit in what its disk or volume has left."""
    free = max(0, capacity_bytes - used_bytes)
    needed = spec.disk_gb * GIB
    if needed > free:
        raise ResourceExhausted(
            f"not enough room on {spec.storage.kind.label} {spec.storage.name} for VM "
            f"{spec.label}: needs {spec.disk_gb} GB, {free // GIB} GB free"
        )


def check_lun_free(spec: VmSpec, vm_ids_on_lun: Iterable[str], shared_allowed: bool = False) -> None:
    """A LUN holds at most one VM, as VMM manages LUNs; `shared_allowed` is the host's
    own rule, for an administrator creating a VM on it directly (Hyper-V allows it)."""
    if shared_allowed:
        return
    others = sorted(i for i in vm_ids_on_lun if i != spec.id)
    if spec.storage.kind is StorageKind.LUN and others:
        raise FailedPrecondition(
            f"LUN {spec.storage.name} already holds VM {others[0]}; it cannot also hold VM {spec.label}"
        )


def available_memory_mb(host: HostConfig, held_mb: Iterable[int]) -> int:
    """Memory still free for VMs: total minus the parent's reserve minus what VMs hold."""
    return host.vm_memory_mb - sum(held_mb)


def check_memory_fits(host: HostConfig, spec: VmSpec, held_mb: Iterable[int]) -> None:
    """Starting or restoring `spec` must not overcommit the host's memory."""
    available = available_memory_mb(host, held_mb)
    if spec.memory_mb > available:
        raise ResourceExhausted(
            f"not enough memory on {host.name} to start {spec.label}: "
            f"needs {spec.memory_mb} MB, {max(available, 0)} MB available"
        )

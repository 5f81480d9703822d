"""The host storage port: what the agent's app keeps on disks and the shared SAN.

A VM's files (configuration, lease, virtual disk, saved memory) live in a directory on
a local disk, a CSV volume or a LUN; the registry is how the host finds its VMs again
after a restart. The app decides in which order these are written (that order is
what makes a crash harmless) but not how: behind this port they are files today
(adapters.files) and could be anything that keeps the same promises.

The port is generic in `Where`, the type that locates one VM's files, because core
knows no file paths: the app, which does, uses `HostStorage[Path]`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from node_agent.core.cpu import GuestCpu
from node_agent.core.lease import Lease
from node_agent.core.power import PowerState
from node_agent.core.vm import StorageRef, VmSpec

Where = TypeVar("Where")


@dataclass(frozen=True)
class RegistryEntry:
    """What this host remembers of one of its VMs to find it again after a restart."""

    vm_id: str
    storage: StorageRef
    path: str
    power_state: PowerState
    state_since: float
    reason: str = ""
    # The lease generation this host's copy holds; None in entries written before leases.
    lease_generation: int | None = None
    # The processor the guest sees while running, paused or saved.
    cpu: GuestCpu | None = None


class LeaseSource(Protocol):
    """A VM's lease as its guest checks it before every write: cheap to ask again."""

    def current(self) -> Lease | None: ...


class HostStorage(Protocol[Where]):
    """Every file operation of one host on its disks, its view of the SAN and its registry.

    Reads raise StorageFault for missing or damaged files; small files are replaced
    whole, so that a crash leaves the old or the new version, never half of one.
    """

    # Where VMs live

    def storage_root(self, storage: StorageRef) -> Where: ...
    def prepare_storage(self, storage: StorageRef) -> None:
        """Make a disk or volume ready to hold VMs (a volume this host starts to see)."""
        ...

    def vm_dir(self, spec: VmSpec) -> Where: ...
    def passthrough_image(self, disk: StorageRef) -> Where:
        """The blocks of a disk passed through whole (made empty at its size if missing)."""
        ...

    def used_bytes(self, storage: StorageRef) -> int: ...
    def vm_ids_on(self, storage: StorageRef) -> list[str]: ...

    # A VM's configuration and disk; its configuration, written last, marks a whole VM

    def read_vm_config(self, vm_dir: Where) -> tuple[VmSpec, str]: ...
    def has_vm(self, vm_dir: Where) -> bool: ...
    def has_disk(self, vm_dir: Where) -> bool: ...
    def write_vm_config(self, vm_dir: Where, spec: VmSpec) -> None: ...
    def create_disk(self, vm_dir: Where, disk_gb: int) -> None: ...
    def remove_vm_config(self, vm_dir: Where) -> None: ...
    def remove_vm_dir(self, vm_dir: Where) -> None: ...

    # The lease; `swap_lease` is a compare-and-swap against every host sharing the storage

    def write_lease(self, vm_dir: Where, lease: Lease) -> None: ...
    def read_lease(self, vm_dir: Where) -> Lease | None: ...
    def swap_lease(self, vm_dir: Where, decide: Callable[[Lease | None], Lease]) -> Lease: ...
    def lease_watch(self, vm_dir: Where) -> LeaseSource: ...

    # The saved memory image

    def saved_state_path(self, vm_dir: Where) -> Where: ...
    def write_saved_state(self, vm_dir: Where, data: bytes) -> None: ...
    def read_saved_state(self, vm_dir: Where) -> bytes: ...
    def remove_saved_state(self, vm_dir: Where) -> None: ...

    # This host's registry of its VMs

    def write_registry(self, entry: RegistryEntry) -> None: ...
    def remove_registry(self, vm_id: str) -> None: ...
    def read_registry(self) -> tuple[list[RegistryEntry], list[str]]:
        """Every registered VM, and a sentence for each entry that cannot be read."""
        ...

"""The port through which the manager reaches node agents (AgentService).

The gRPC client in adapters implements it; unit tests may pass any object with these
coroutines. Errors are ManagerError subclasses carrying the agent's sentence.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Protocol

from manager.core.model import (
    DiskConversionProgress,
    Inventory,
    LiveMigrationOrder,
    MigrationProgress,
    ReportedVm,
    StorageLocation,
    StorageMoveResult,
    TransferOrder,
    TransferProgress,
    VmOperation,
    VmRecord,
)


class AgentPort(Protocol):
    async def get_inventory(self, host: str, address: str) -> Inventory: ...

    async def get_vm(self, host: str, address: str, vm_id: str) -> ReportedVm: ...

    async def probe(self, host: str, address: str, timeout: float) -> None:
        """Raises a ManagerError unless the host answers a GetInventory within `timeout`."""
        ...

    async def create_vm(
        self, host: str, address: str, vm: VmRecord, take_over: bool = False, lease_generation: int = 0
    ) -> ReportedVm:
        """`take_over` adopts files already on shared storage, holding the lease at `lease_generation`."""
        ...

    async def operate_vm(self, host: str, address: str, vm_id: str, operation: VmOperation) -> ReportedVm: ...

    async def delete_vm(self, host: str, address: str, vm_id: str) -> None: ...

    async def update_vm(
        self,
        host: str,
        address: str,
        vm_id: str,
        processor_compatibility: bool | None,
        iso_image: str | None = None,
        passthrough_disks: tuple[StorageLocation, ...] | None = None,
    ) -> ReportedVm:
        """Change what is not None; `passthrough_disks` replaces the VM's list."""
        ...

    async def check_compatibility(
        self, host: str, address: str, vm: VmRecord, cpu_vendor: str, cpu_features: tuple[str, ...]
    ) -> list[str]:
        """Every reason `host` cannot run `vm` (its storage as it would be there); empty if it can."""
        ...

    def migrate_vm(
        self, host: str, address: str, order: LiveMigrationOrder
    ) -> AsyncGenerator[MigrationProgress, None]:
        """The source's progress messages; the last one is `completed`. Closing the
        iterator cancels the call (the agent finishes or rolls back on its own)."""
        ...

    def send_vm(
        self, host: str, address: str, order: TransferOrder
    ) -> AsyncGenerator[TransferProgress, None]:
        """A network transfer's progress from its source; the last message carries the VM
        as the destination holds it. Closing the iterator cancels the call."""
        ...

    async def move_vm_storage(
        self, host: str, address: str, vm_id: str, storage: StorageLocation
    ) -> StorageMoveResult: ...

    def convert_disk(
        self, host: str, address: str, vm_id: str, disk: StorageLocation
    ) -> AsyncGenerator[DiskConversionProgress, None]:
        """A pass-through disk's conversion to a virtual disk, as it goes; the last message
        carries the VM. Closing the iterator cancels the call (and the conversion)."""
        ...

    async def shutdown_host(self, host: str, address: str, reason: str) -> None:
        """Tell the agent to leave: it shuts its remaining guests down, announces `stopped`
        on the broker and ends its process."""
        ...

    async def close(self) -> None: ...

"""The port through which the manager reaches node agents (AgentService).

The gRPC client in adapters implements it; unit tests may pass any object with these
coroutines. Errors are ManagerError subclasses carrying the agent's sentence.
"""

from __future__ import annotations

from typing import Protocol

from manager.core.model import Inventory, ReportedVm, VmOperation, VmRecord


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

    async def close(self) -> None: ...

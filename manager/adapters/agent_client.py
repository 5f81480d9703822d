"""The manager's side of AgentService: one grpc.aio channel per agent address.

Reads that are safe to repeat (GetInventory, GetVm) are retried on UNAVAILABLE; power
operations and creation are not, because a repeated START or CREATE is not the same
request. RpcErrors become manager errors that keep the agent's own sentence.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import TypeVar

import grpc
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_fixed,
)

from havm.contract.grpc_policy import API_RESPONSE_LIMIT
from havm.contract.identity import IdentityFile, aio_channel
from havm.v1 import agent_pb2, agent_pb2_grpc
from manager.adapters.proto_mapping import (
    inventory_from_proto,
    migration_progress_from_proto,
    operation_to_proto,
    reported_vm_from_proto,
    storage_to_proto,
    storages_to_proto,
    transfer_progress_from_proto,
    vm_spec_to_proto,
)
from manager.core.errors import (
    AlreadyExistsError,
    DeadlineExceededError,
    FailedPreconditionError,
    InvalidArgumentError,
    ManagerError,
    MigrationFailure,
    NotFoundError,
    ResourceExhaustedError,
    UnavailableError,
)
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
from manager.core.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

_ERRORS: dict[grpc.StatusCode, type[ManagerError]] = {
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
}


def error_from_rpc(host: str, error: grpc.aio.AioRpcError) -> ManagerError:
    """A manager error carrying the agent's sentence (or a plain one when it has none)."""
    code = error.code()
    details = error.details() or ""
    if code is grpc.StatusCode.UNAVAILABLE:
        return UnavailableError(
            f"agent of host {host} is unavailable ({details or 'no answer'})", migration_failure(error)
        )
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return DeadlineExceededError(f"agent of host {host} did not answer in time")
    cls = _ERRORS.get(code, ManagerError)
    return cls(details or f"agent of host {host} failed with {code.name}", migration_failure(error))


# The trailing metadata of a failed MigrateVm naming the kind of failure (agent.proto).
MIGRATION_FAILURE_KEY = "havm-migration-failure"
_FAILURES = {
    agent_pb2.MIGRATION_FAILURE_NOT_CONVERGED: MigrationFailure.NOT_CONVERGED,
    agent_pb2.MIGRATION_FAILURE_DESTINATION_REFUSED: MigrationFailure.DESTINATION_REFUSED,
    agent_pb2.MIGRATION_FAILURE_PEER_GONE: MigrationFailure.PEER_GONE,
    agent_pb2.MIGRATION_FAILURE_FENCED: MigrationFailure.FENCED,
}


def migration_failure(error: grpc.aio.AioRpcError) -> MigrationFailure | None:
    """The kind of migration failure the agent named, if it named one it knows."""
    for key, value in error.trailing_metadata() or ():
        if key == MIGRATION_FAILURE_KEY and isinstance(value, str):
            try:
                return _FAILURES.get(agent_pb2.MigrationFailure.Value(value))
            except ValueError:  # a newer agent's kind: the sentence still tells a person
                return None
    return None


def _is_unavailable(error: BaseException) -> bool:
    return isinstance(error, grpc.aio.AioRpcError) and error.code() is grpc.StatusCode.UNAVAILABLE


class AgentClient:
    """Calls agents by address; channels are opened on first use and kept."""

    def __init__(
        self,
        settings: Settings,
        open_channel: Callable[[str], grpc.aio.Channel] | None = None,
        identity: IdentityFile | None = None,
    ) -> None:
        self._settings = settings
        # Keyed by host and address: with TLS a channel checks it reaches that host.
        self._channels: dict[tuple[str, str], grpc.aio.Channel] = {}
        self._identity = identity
        # A scenario passes its in-process channels; by default a socket per address.
        self._open_channel = open_channel

    def _stub(self, host: str, address: str) -> agent_pb2_grpc.AgentServiceStub:
        channel = self._channels.get((host, address))
        if channel is None and self._open_channel is not None:
            channel = self._channels[(host, address)] = self._open_channel(address)
        if channel is None:
            backoff_ms = int(self._settings.agent_reconnect_backoff_max_s * 1000)
            channel = aio_channel(
                address,
                self._identity,
                host,
                options=[
                    # Inventories of many VMs: the limit of the manager's own answers.
                    ("grpc.max_receive_message_length", API_RESPONSE_LIMIT),
                    ("grpc.initial_reconnect_backoff_ms", min(backoff_ms, 200)),
                    ("grpc.min_reconnect_backoff_ms", min(backoff_ms, 200)),
                    ("grpc.max_reconnect_backoff_ms", backoff_ms),
                ],
            )
            self._channels[(host, address)] = channel
        return agent_pb2_grpc.AgentServiceStub(channel)

    async def _read(self, host: str, call: Callable[[], Awaitable[T]]) -> T:
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception(_is_unavailable),
                stop=stop_after_attempt(self._settings.agent_read_attempts),
                wait=wait_fixed(self._settings.agent_retry_wait_s),
                reraise=True,
            ):
                with attempt:
                    return await call()
        except grpc.aio.AioRpcError as error:
            raise error_from_rpc(host, error) from None
        raise AssertionError("unreachable: tenacity either returns or raises")

    async def _write(self, host: str, call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await call()
        except grpc.aio.AioRpcError as error:
            raise error_from_rpc(host, error) from None

    async def get_inventory(self, host: str, address: str) -> Inventory:
        stub = self._stub(host, address)
        timeout = self._settings.agent_call_timeout_s
        response = await self._read(
            host,
            lambda: stub.GetInventory(agent_pb2.AgentServiceGetInventoryRequest(), timeout=timeout),
        )
        return inventory_from_proto(response)

    async def get_vm(self, host: str, address: str, vm_id: str) -> ReportedVm:
        stub = self._stub(host, address)
        timeout = self._settings.agent_call_timeout_s
        response = await self._read(
            host, lambda: stub.GetVm(agent_pb2.AgentServiceGetVmRequest(vm_id=vm_id), timeout=timeout)
        )
        return reported_vm_from_proto(response.vm)

    async def probe(self, host: str, address: str, timeout: float) -> None:
        """One GetInventory with a short deadline and no retry: does the host answer?"""
        stub = self._stub(host, address)
        await self._write(
            host, lambda: stub.GetInventory(agent_pb2.AgentServiceGetInventoryRequest(), timeout=timeout)
        )

    async def create_vm(
        self, host: str, address: str, vm: VmRecord, take_over: bool = False, lease_generation: int = 0
    ) -> ReportedVm:
        stub = self._stub(host, address)
        request = agent_pb2.AgentServiceCreateVmRequest(
            spec=vm_spec_to_proto(vm), take_over=take_over, lease_generation=lease_generation
        )
        response = await self._write(
            host, lambda: stub.CreateVm(request, timeout=self._settings.agent_operation_timeout_s)
        )
        return reported_vm_from_proto(response.vm)

    async def operate_vm(self, host: str, address: str, vm_id: str, operation: VmOperation) -> ReportedVm:
        stub = self._stub(host, address)
        request = agent_pb2.AgentServiceOperateVmRequest(vm_id=vm_id, operation=operation_to_proto(operation))
        response = await self._write(
            host, lambda: stub.OperateVm(request, timeout=self._settings.agent_operation_timeout_s)
        )
        return reported_vm_from_proto(response.vm)

    async def delete_vm(self, host: str, address: str, vm_id: str) -> None:
        stub = self._stub(host, address)
        request = agent_pb2.AgentServiceDeleteVmRequest(vm_id=vm_id)
        await self._write(
            host, lambda: stub.DeleteVm(request, timeout=self._settings.agent_operation_timeout_s)
        )

    async def shutdown_host(self, host: str, address: str, reason: str) -> None:
        stub = self._stub(host, address)
        request = agent_pb2.AgentServiceShutdownRequest(reason=reason)
        await self._write(
            host, lambda: stub.Shutdown(request, timeout=self._settings.agent_operation_timeout_s)
        )

    async def update_vm(
        self,
        host: str,
        address: str,
        vm_id: str,
        processor_compatibility: bool | None,
        iso_image: str | None = None,
        passthrough_disks: tuple[StorageLocation, ...] | None = None,
    ) -> ReportedVm:
        stub = self._stub(host, address)
        request = agent_pb2.AgentServiceUpdateVmRequest(
            vm_id=vm_id,
            processor_compatibility=processor_compatibility,
            iso_image=iso_image,
            replace_passthrough_disks=passthrough_disks is not None,
            passthrough_disks=storages_to_proto(passthrough_disks or ()),
        )
        response = await self._write(
            host, lambda: stub.UpdateVm(request, timeout=self._settings.agent_operation_timeout_s)
        )
        return reported_vm_from_proto(response.vm)

    async def check_compatibility(
        self, host: str, address: str, vm: VmRecord, cpu_vendor: str, cpu_features: tuple[str, ...]
    ) -> list[str]:
        stub = self._stub(host, address)
        request = agent_pb2.AgentServiceCheckCompatibilityRequest(
            spec=vm_spec_to_proto(vm), cpu_vendor=cpu_vendor, cpu_features=cpu_features
        )
        timeout = self._settings.agent_call_timeout_s
        response = await self._read(host, lambda: stub.CheckCompatibility(request, timeout=timeout))
        return [] if response.compatible else list(response.reasons) or [f"host {host} refuses the VM"]

    async def migrate_vm(
        self, host: str, address: str, order: LiveMigrationOrder
    ) -> AsyncGenerator[MigrationProgress, None]:
        stub = self._stub(host, address)
        request = agent_pb2.AgentServiceMigrateVmRequest(
            vm_id=order.vm_id,
            migration_id=order.migration_id,
            destination_host=order.destination_host,
            destination_address=order.destination_address,
            lease_generation=order.lease_generation,
            max_passes=order.max_passes,
            blackout_budget_ms=order.blackout_budget_ms,
            bandwidth_mb_per_s=order.bandwidth_mb_per_s,
            storage=storage_to_proto(order.storage),
            reattach=order.reattach,
        )
        # No deadline: a large VM takes as long as it takes; the caller judges stalls.
        call = stub.MigrateVm(request)
        try:
            async for response in call:
                yield migration_progress_from_proto(response)
        except grpc.aio.AioRpcError as error:
            raise error_from_rpc(host, error) from None
        finally:
            call.cancel()

    async def send_vm(
        self, host: str, address: str, order: TransferOrder
    ) -> AsyncGenerator[TransferProgress, None]:
        stub = self._stub(host, address)
        request = agent_pb2.AgentServiceSendVmRequest(
            vm_id=order.vm.id,
            transfer_id=order.transfer_id,
            destination_host=order.destination_host,
            destination_address=order.destination_address,
            spec=vm_spec_to_proto(order.vm),
            lease_generation=order.lease_generation,
            bandwidth_mb_per_s=order.bandwidth_mb_per_s,
        )
        # No deadline: a large disk takes as long as it takes; the agent gives up on a
        # silent destination itself and the stream ends with its error.
        call = stub.SendVm(request)
        try:
            async for response in call:
                yield transfer_progress_from_proto(response)
        except grpc.aio.AioRpcError as error:
            raise error_from_rpc(host, error) from None
        finally:
            call.cancel()

    async def move_vm_storage(
        self, host: str, address: str, vm_id: str, storage: StorageLocation
    ) -> StorageMoveResult:
        stub = self._stub(host, address)
        request = agent_pb2.AgentServiceMoveVmStorageRequest(vm_id=vm_id, storage=storage_to_proto(storage))
        response = await self._write(
            host, lambda: stub.MoveVmStorage(request, timeout=self._settings.agent_operation_timeout_s)
        )
        return StorageMoveResult(
            vm=reported_vm_from_proto(response.vm),
            bytes_copied=response.bytes_copied,
            duration_ms=response.duration_ms,
            blackout_ms=response.blackout_ms,
        )

    async def convert_disk(
        self, host: str, address: str, vm_id: str, disk: StorageLocation
    ) -> AsyncGenerator[DiskConversionProgress, None]:
        stub = self._stub(host, address)
        request = agent_pb2.AgentServiceConvertDiskRequest(vm_id=vm_id, disk=storage_to_proto(disk))
        # No deadline: a large disk takes as long as it takes; progress comes all along.
        call = stub.ConvertDisk(request)
        try:
            async for response in call:
                yield DiskConversionProgress(
                    bytes_copied=response.bytes_copied,
                    bytes_total=response.bytes_total,
                    mb_per_s=response.mb_per_s,
                    vm=reported_vm_from_proto(response.vm) if response.HasField("vm") else None,
                )
        except grpc.aio.AioRpcError as error:
            raise error_from_rpc(host, error) from None
        finally:
            call.cancel()

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()

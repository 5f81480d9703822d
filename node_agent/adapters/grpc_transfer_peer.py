"""The source agent's end of a network transfer stream to the destination agent.

The source opens ReceiveVm on the destination and writes the offer, the file chunks
and the end; the destination answers once, with the VM it then holds. This translates
those core messages to the wire and the destination's refusals back to AgentErrors
carrying its sentence after `host NAME: `. It goes the way live migration goes
(adapters.grpc_peer): the same channel maker (mutual TLS to the peer's host name on a
secured agent), the same migration network that a fault can cut, the same stall
timeout, and `await write()` as the flow control.

On a grpc.aio channel, the chunks go as the bytes of their requests, framed by hand
(adapters.transfer_messages): the copy's hot path. Any other channel (a scenario's
in-process one, which hands messages over without serializing them) gets messages.
"""

from __future__ import annotations

import asyncio
from typing import Any, TypeAlias

import grpc

from havm.v1 import agent_pb2
from node_agent.adapters.grpc_agent import TRANSFER_ACCEPTED_KEY
from node_agent.adapters.grpc_peer import PeerStream, PeerStreams, transport_broke
from node_agent.adapters.migration_network import MigrationNetwork
from node_agent.adapters.transfer_messages import chunk_request_bytes, transfer_message_to_pb
from node_agent.adapters.vm_messages import vm_from_pb
from node_agent.core.errors import (
    AgentError,
    AlreadyExists,
    Corrupted,
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
)
from node_agent.core.transfer import FileChunk, FilesOffer, TransferMessage
from node_agent.core.views import VmView

# The destination's refusals, passed on with its sentence.
_REFUSALS: dict[grpc.StatusCode, type[AgentError]] = {
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.DATA_LOSS: Corrupted,
}
# How grpc marks a call whose write failed, whatever the peer's own status.
_PROVISIONAL = (grpc.StatusCode.INTERNAL, "Internal error from Core")
_STATUS_GRACE_S = 0.5
_STATUS_POLL_S = 0.01
# What a destination that went away (or never was there) ends a call with.
_GONE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED)
# ReceiveVm as the generated stub names it, for a call that takes serialized chunks.
_RECEIVE_VM = f"/{agent_pb2.DESCRIPTOR.services_by_name['AgentService'].full_name}/ReceiveVm"
_Request: TypeAlias = agent_pb2.AgentServiceReceiveVmRequest | bytes
_Call: TypeAlias = grpc.aio.StreamUnaryCall[_Request, agent_pb2.AgentServiceReceiveVmResponse]


def _serialized(request: _Request) -> bytes:
    return request if isinstance(request, bytes) else request.SerializeToString()


class FilesPeer(PeerStream):
    """An open ReceiveVm stream to one destination agent (the FilesLink port)."""

    def __init__(
        self,
        host_name: str,
        address: str,
        timeout_s: float,
        network: MigrationNetwork | None = None,
        channel: grpc.aio.Channel | None = None,
    ) -> None:
        super().__init__(host_name, address, timeout_s, network, channel)
        self._framed = isinstance(self._channel, grpc.aio.Channel)
        self._call: _Call | None = None

    def _open(self) -> _Call:
        if self._call is None:
            try:
                if self._framed:
                    self._call = self._channel.stream_unary(
                        _RECEIVE_VM,
                        request_serializer=_serialized,
                        response_deserializer=agent_pb2.AgentServiceReceiveVmResponse.FromString,
                    )()
                else:
                    self._call = self._stub.ReceiveVm()
            except grpc.RpcError as exc:  # a channel that cannot carry the call at all
                code = exc.code() if isinstance(exc, grpc.aio.AioRpcError) else grpc.StatusCode.UNKNOWN
                details = exc.details() if isinstance(exc, grpc.aio.AioRpcError) else str(exc)
                raise self._judged(code, details) from None
        return self._call

    async def offer(self, offer: FilesOffer) -> None:
        """Send the offer, then wait until the destination says it took it.

        No chunk leaves before: a refusal then ends a call with nothing in flight, and
        arrives whole (a write that meets a closed stream can mask the peer's status).
        """
        await self.send(offer)
        call = self._open()
        try:
            async with asyncio.timeout(self._timeout_s):
                metadata = await call.initial_metadata()
                await self._network.wait_connected()
        except TimeoutError:
            raise self._silent() from None
        except (grpc.RpcError, asyncio.InvalidStateError, grpc.aio.UsageError):
            raise await self._failure() from None
        if not any(key == TRANSFER_ACCEPTED_KEY for key, _ in metadata or ()):
            raise await self._failure()  # the call ended: the refusal is its status

    async def send(self, message: TransferMessage) -> None:
        request: _Request
        if self._framed and isinstance(message, FileChunk):
            request = chunk_request_bytes(message)
        else:
            request = transfer_message_to_pb(message)
        call = self._open()
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._network.wait_connected()
                await call.write(request)
        except TimeoutError:
            raise self._silent() from None
        except (grpc.RpcError, asyncio.InvalidStateError, grpc.aio.UsageError):
            raise await self._failure() from None

    async def finish(self) -> VmView:
        call = self._open()
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._network.wait_connected()
                await call.done_writing()
                response = await call
                # An answer that reaches a cut network is not taken in until it heals.
                await self._network.wait_connected()
        except TimeoutError:
            raise self._silent() from None
        except (grpc.RpcError, asyncio.InvalidStateError, grpc.aio.UsageError):
            raise await self._failure() from None
        if not response.HasField("vm"):
            raise Unavailable(f"host {self.host_name} answered the network transfer without the VM it holds")
        return vm_from_pb(response.vm)

    async def close(self) -> None:
        if self._call is not None:
            self._call.cancel()
        await self._channel.close()

    async def _failure(self) -> AgentError:
        """The destination's own sentence when it ended the stream, else that it went away."""
        call = self._call
        if call is None:
            return Unavailable(f"host {self.host_name} ({self.address}) went away")
        try:
            async with asyncio.timeout(self._timeout_s):
                code, details = await _final_status(call)
        except TimeoutError:
            return Unavailable(f"host {self.host_name} ({self.address}) went away")
        return self._judged(code, details)

    def _judged(self, code: grpc.StatusCode, details: str | None) -> AgentError:
        refusal = _REFUSALS.get(code)
        if refusal is not None:
            return refusal(f"host {self.host_name}: {details}")
        if code is grpc.StatusCode.OK:
            return Unavailable(f"host {self.host_name} ended the network transfer early")
        if code in _GONE or transport_broke(code, details):
            return Unavailable(f"host {self.host_name} ({self.address}) went away: {details or code.name}")
        error = AgentError(f"host {self.host_name} failed: {details or code.name}")
        error.code = code.name
        return error


async def _final_status(call: grpc.aio.StreamUnaryCall[Any, Any]) -> tuple[grpc.StatusCode, str | None]:
    """How the call ended, as the destination said it.

    A write that meets the stream already closed marks the call INTERNAL on its own, and
    that mark may land before or after the destination's status: the end of the call
    itself carries the destination's, and the mark is only trusted once nothing else
    came within a moment.
    """
    try:
        await call
        return grpc.StatusCode.OK, ""
    except grpc.aio.AioRpcError as error:
        if (error.code(), error.details()) != _PROVISIONAL:
            return error.code(), error.details()
    except (grpc.RpcError, asyncio.InvalidStateError):
        pass
    code, details = await call.code(), await call.details()
    waited = 0.0
    while (code, details) == _PROVISIONAL and waited < _STATUS_GRACE_S:
        await asyncio.sleep(_STATUS_POLL_S)
        waited += _STATUS_POLL_S
        code, details = await call.code(), await call.details()
    return code, details


class GrpcFilesConnector(PeerStreams):
    """Opens network-transfer streams for this host's VMs that leave (the FilesConnector port)."""

    def __call__(self, host_name: str, address: str) -> FilesPeer:
        channel = self._channel_to(host_name, address)
        return FilesPeer(host_name, address, self._timeout_s, self._network, channel=channel)

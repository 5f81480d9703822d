"""The source agent's end of a live migration stream to the destination agent.

A live migration's bytes flow agent to agent: the source opens ReceiveMigration on
the destination and writes the offer, pages, disk extents, device state and commit;
the destination answers ACCEPTED, READY and RESUMED. This translates those core
messages to the wire and the destination's failures back to AgentErrors carrying its
sentence. `await write()` is the flow control: a slow destination slows the source.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import grpc

from havm.contract.grpc_policy import transport_failure
from havm.v1 import agent_pb2, agent_pb2_grpc
from node_agent.adapters.grpc_agent import BULK_TRANSFER_OPTIONS, reply_from_pb, source_message_to_pb
from node_agent.adapters.migration_network import MigrationNetwork
from node_agent.core.errors import AgentError, Corrupted, FailedPrecondition, MigrationFailure, Unavailable
from node_agent.core.migration import PeerReply, SourceMessage


def transport_broke(code: grpc.StatusCode, details: str | None) -> bool:
    """gRPC's own INTERNAL when the peer's process dies in the middle of a stream (the
    connection is reset): the destination went away, it did not fail."""
    return code is grpc.StatusCode.INTERNAL and transport_failure(details)


class PeerStream:
    """What every agent-to-agent stream to one destination holds: the peer's name and
    address, the stall timeout, this host's migration network and the channel."""

    def __init__(
        self,
        host_name: str,
        address: str,
        timeout_s: float,
        network: MigrationNetwork | None = None,
        channel: grpc.aio.Channel | None = None,
    ) -> None:
        self.host_name = host_name
        self.address = address
        self._timeout_s = timeout_s
        self._network = network or MigrationNetwork(None)
        # A scenario hands in its in-process channel; by default a socket to the peer.
        self._channel = channel or grpc.aio.insecure_channel(address, options=BULK_TRANSFER_OPTIONS)
        self._stub = agent_pb2_grpc.AgentServiceStub(self._channel)

    def _silent(self) -> AgentError:
        return Unavailable(
            f"host {self.host_name} ({self.address}) did not answer within {self._timeout_s:g} s"
        )


class MigrationPeer(PeerStream):
    """An open ReceiveMigration stream to one destination agent."""

    def __init__(
        self,
        host_name: str,
        address: str,
        timeout_s: float,
        network: MigrationNetwork | None = None,
        channel: grpc.aio.Channel | None = None,
    ) -> None:
        super().__init__(host_name, address, timeout_s, network, channel)
        self._call = self._stub.ReceiveMigration()

    async def send(self, message: SourceMessage) -> None:
        request = source_message_to_pb(message)
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._network.wait_connected()
                await self._call.write(request)
        except TimeoutError:
            raise self._silent() from None
        except (grpc.RpcError, asyncio.InvalidStateError, grpc.aio.UsageError):
            raise await self._failure() from None

    async def receive(self) -> PeerReply:
        try:
            async with asyncio.timeout(self._timeout_s):
                reply = await self._call.read()
                # A reply that reaches a cut network is not taken in until it heals.
                await self._network.wait_connected()
        except TimeoutError:
            raise self._silent() from None
        except (grpc.RpcError, asyncio.InvalidStateError, grpc.aio.UsageError):
            raise await self._failure() from None
        if reply is grpc.aio.EOF:
            raise await self._failure()
        assert isinstance(reply, agent_pb2.AgentServiceReceiveMigrationResponse)
        return reply_from_pb(reply)

    async def close(self) -> None:
        self._call.cancel()
        await self._channel.close()

    def _silent(self) -> AgentError:
        return super()._silent().because(MigrationFailure.PEER_GONE)

    async def _failure(self) -> AgentError:
        """The destination's own sentence when it ended the stream, else that it went away."""
        try:
            code = await asyncio.wait_for(self._call.code(), self._timeout_s)
            details = await self._call.details()
        except (TimeoutError, grpc.RpcError):
            return Unavailable(f"host {self.host_name} ({self.address}) went away").because(
                MigrationFailure.PEER_GONE
            )
        if code is grpc.StatusCode.FAILED_PRECONDITION:
            return FailedPrecondition(f"host {self.host_name} refused: {details}").because(
                MigrationFailure.DESTINATION_REFUSED
            )
        if code is grpc.StatusCode.DATA_LOSS:
            return Corrupted(f"host {self.host_name}: {details}")
        if code is grpc.StatusCode.OK:
            return Unavailable(f"host {self.host_name} ended the migration stream early").because(
                MigrationFailure.PEER_GONE
            )
        error: AgentError = Unavailable(
            f"host {self.host_name} ({self.address}) went away: {details or code.name}"
        ).because(MigrationFailure.PEER_GONE)
        if code not in (
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.CANCELLED,
            grpc.StatusCode.DEADLINE_EXCEEDED,
        ) and not transport_broke(code, details):
            error = AgentError(f"host {self.host_name} failed: {details or code.name}")
            error.code = code.name
        return error


class PeerStreams:
    """What every stream this host opens to another agent shares, fixed here once: the
    stall timeout, the host's migration network (which a fault can cut), and how a
    channel to a peer is made (None: a plaintext socket; a secured agent opens mutual
    TLS to the peer's name, a scenario hands in its in-process channels; either is
    called with the peer's host name and address)."""

    def __init__(
        self,
        timeout_s: float,
        network: MigrationNetwork,
        channel: Callable[[str, str], grpc.aio.Channel] | None = None,
    ) -> None:
        self._timeout_s = timeout_s
        self._network = network
        self._channel = channel

    def _channel_to(self, host_name: str, address: str) -> grpc.aio.Channel | None:
        return self._channel(host_name, address) if self._channel is not None else None


class GrpcPeerConnector(PeerStreams):
    """Opens migration streams for this host's outgoing live migrations (the PeerConnector port)."""

    def __call__(self, host_name: str, address: str) -> MigrationPeer:
        channel = self._channel_to(host_name, address)
        return MigrationPeer(host_name, address, self._timeout_s, self._network, channel=channel)

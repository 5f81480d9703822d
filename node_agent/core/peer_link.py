"""The migration peer link port: how a source agent talks to a destination agent.

Live migration is a conversation (offer, pages, device state, commit one way; accepted,
ready, resumed the other) that the source drives. The app speaks it in core messages
over this port and never learns whether a gRPC stream, a scenario's in-process channel
or a test double carries it, nor how a cut migration network holds it back.
"""

from __future__ import annotations

from typing import Protocol

from node_agent.core.migration import PeerReply, SourceMessage


class MigrationLink(Protocol):
    """One open migration stream to one destination agent.

    `send` returning is the flow control: a slow destination slows the source. Both
    `send` and `receive` raise an AgentError carrying the destination's sentence when
    it refused, or saying that it went away or fell silent.
    """

    @property
    def host_name(self) -> str:
        """The destination host, for the sentences that name it."""
        ...

    async def send(self, message: SourceMessage) -> None: ...

    async def receive(self) -> PeerReply: ...

    async def close(self) -> None:
        """End the stream; safe to call after a failure."""
        ...


class PeerConnector(Protocol):
    """Opens a migration stream to the agent of `host_name` at `address`."""

    def __call__(self, host_name: str, address: str) -> MigrationLink: ...

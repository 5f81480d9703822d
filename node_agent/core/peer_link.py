"""The peer link ports: how a source agent talks to a destination agent.

Live migration is a conversation (offer, pages, device state, commit one way; accepted,
ready, resumed the other) that the source drives. A network transfer is a monologue
(offer, file chunks, end) answered once, by the VM as the destination then holds it.
The app speaks both in core messages over these ports and never learns whether a gRPC
stream, a scenario's in-process channel or a test double carries them, nor how a cut
migration network holds them back.
"""

from __future__ import annotations

from typing import Protocol

from node_agent.core.migration import PeerReply, SourceMessage
from node_agent.core.transfer import FileChunk, FilesEnd, FilesOffer
from node_agent.core.views import VmView


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


class FilesLink(Protocol):
    """One open network-transfer stream to one destination agent.

    `offer` returns once the destination took the offer; `send` returning is the flow
    control, as on a migration stream. Each raises an AgentError carrying the
    destination's sentence when it refused, or saying that it went away or fell silent.
    """

    @property
    def host_name(self) -> str: ...

    async def offer(self, offer: FilesOffer) -> None: ...

    async def send(self, message: FileChunk | FilesEnd) -> None: ...

    async def finish(self) -> VmView:
        """Close the sending side and wait for the answer: the VM as the destination holds it."""
        ...

    async def close(self) -> None:
        """End the stream; safe to call after a failure."""
        ...


class FilesConnector(Protocol):
    """Opens a network-transfer stream to the agent of `host_name` at `address`."""

    def __call__(self, host_name: str, address: str) -> FilesLink: ...

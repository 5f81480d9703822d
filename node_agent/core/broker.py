"""The port to the broker that carries this host's retained status and heartbeats.

The status loop (node_agent.app.status) depends on this Protocol only: the MQTT client
(node_agent.adapters.mqtt_status) is one implementation, a scenario's in-process broker
another. Every failure of the broker or of the client surfaces as BrokerUnavailable, so
that the loop has exactly one thing to handle.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class BrokerUnavailable(Exception):
    """The broker cannot be reached or the connection to it was lost."""


class BrokerSession(Protocol):
    """One connection to the broker whose last will marks the host offline."""

    async def open(self) -> None:
        """Connect and subscribe to this host's echo topic."""

    async def publish_status(self, payload: bytes) -> None:
        """Publish the retained status; returns once the broker acknowledged it."""

    async def publish_heartbeat(self, topic: str, payload: bytes) -> None:
        """Fire and forget: a late beat is worth nothing."""

    async def receive_echoes(self, on_echo: Callable[[bytes], None]) -> None:
        """Hand each beat the broker sends back to `on_echo` until the session ends."""

    async def close(self) -> None:
        """Disconnect (an orderly close: no last will)."""

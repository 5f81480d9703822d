"""One session with the MQTT broker that carries this host's retained status and heartbeats.

The last will makes the broker itself announce `offline` when the agent dies or
loses its connection; the app loop republishes `online` and reconnects. The session
also subscribes to this host's own heartbeat topic: each beat the broker sends back
proves that the heartbeat network works both ways right now, which an open TCP
connection does not (a cut cable leaves it open until its keepalive expires). Every
failure of the broker or the client library surfaces as the port's BrokerUnavailable
(node_agent.core.broker) so that the loop has exactly one thing to handle.
"""

from __future__ import annotations

from collections.abc import Callable

import aiomqtt

from node_agent.core.broker import BrokerUnavailable


class MqttBrokerSession:
    """The BrokerSession port over MQTT: a connected client whose last will marks the host offline."""

    def __init__(
        self,
        hostname: str,
        port: int,
        client_id: str,
        topic: str,
        offline_payload: bytes,
        keepalive_s: int,
        timeout_s: float,
        echo_topic: str,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.topic = topic
        self.echo_topic = echo_topic
        self._timeout_s = timeout_s
        self._client = aiomqtt.Client(
            hostname,
            port,
            identifier=client_id,
            username=username,
            password=password,
            will=aiomqtt.Will(topic, offline_payload, qos=1, retain=True),
            keepalive=keepalive_s,
            timeout=timeout_s,
            clean_session=True,
        )
        self._open = False

    async def open(self) -> None:
        """Connect and subscribe to the echo topic; a session that cannot do both is no use."""
        try:
            await self._client.__aenter__()
        except (aiomqtt.MqttError, OSError) as exc:
            raise BrokerUnavailable(str(exc) or type(exc).__name__) from None
        self._open = True
        try:
            await self._client.subscribe(self.echo_topic, qos=0, timeout=self._timeout_s)
        except (aiomqtt.MqttError, OSError) as exc:
            await self.close()
            raise BrokerUnavailable(str(exc) or type(exc).__name__) from None

    async def publish_status(self, payload: bytes) -> None:
        """Publish the retained status; returns once the broker acknowledged it."""
        try:
            await self._client.publish(self.topic, payload, qos=1, retain=True, timeout=self._timeout_s)
        except (aiomqtt.MqttError, OSError) as exc:
            raise BrokerUnavailable(str(exc) or type(exc).__name__) from None

    async def publish_heartbeat(self, topic: str, payload: bytes) -> None:
        """Fire and forget (QoS 0, not retained): a late beat is worth nothing."""
        try:
            await self._client.publish(topic, payload, qos=0, retain=False, timeout=self._timeout_s)
        except (aiomqtt.MqttError, OSError) as exc:
            raise BrokerUnavailable(str(exc) or type(exc).__name__) from None

    async def receive_echoes(self, on_echo: Callable[[bytes], None]) -> None:
        """Hand each message of the echo topic to `on_echo` as it arrives.

        Returns only by raising BrokerUnavailable, when the connection drops.
        """
        try:
            async for message in self._client.messages:
                if message.topic.matches(self.echo_topic) and isinstance(message.payload, bytes):
                    on_echo(message.payload)
        except aiomqtt.MqttError as exc:
            raise BrokerUnavailable(str(exc) or "connection lost") from None
        raise BrokerUnavailable("connection closed")

    async def close(self) -> None:
        """Disconnect cleanly, so that the broker does not send the last will."""
        if not self._open:
            return
        self._open = False
        try:
            await self._client.__aexit__(None, None, None)
        except (aiomqtt.MqttError, OSError):
            pass  # already gone: nothing left to close

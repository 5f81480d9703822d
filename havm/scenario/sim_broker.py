"""The MQTT broker of a scenario: retained status, last wills and keepalive, in process.

Only what the heartbeat path needs, with the timing of a real MQTT 3.1.1 broker:

- An agent's session publishes its retained status (acknowledged, QoS 1) and
  heartbeats (QoS 0), and hears its own heartbeats back.
- A session whose client dies (its machine killed) ends at once: the broker
  publishes its last will. A client that goes silent (frozen, powered off) ends when
  the broker has heard nothing for 1.5 keepalive intervals: then the will.
- A cut heartbeat path drops everything both ways without closing anything: the
  client's QoS 0 beats vanish, its QoS 1 status waits out its timeout, and it notices
  the connection is dead after two keepalive intervals without a word from the broker
  (a ping unanswered), as an MQTT client does.
- A crashed broker ends every session and forgets retained messages (no persistence),
  and refuses connections until it is started again.

The manager subscribes with a callback; messages reach it on the loop, as the
manager's machine, never inside the publisher's call.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable

from havm.scenario.virtual_loop import VirtualTimeLoop, current_machine
from node_agent.app.runner import BrokerSessionParams
from node_agent.core.broker import BrokerUnavailable

# A broker ends a silent client after this many keepalive intervals (MQTT 3.1.1, 3.1.2.10).
BROKER_GRACE = 1.5
# A client gives up on a broker that answered nothing for this many intervals.
CLIENT_GRACE = 2.0


class SimBroker:
    def __init__(
        self,
        loop: VirtualTimeLoop,
        path_open: Callable[[str], bool],
        on_connection: Callable[[bool], None],
    ) -> None:
        self.loop = loop
        self.up = True
        self._path_open = path_open
        self._on_connection = on_connection
        self._retained: dict[str, bytes] = {}
        self._subscribers: list[tuple[Callable[[str, bytes], None], contextvars.Context]] = []
        self._sessions: dict[str, SimBrokerSession] = {}

    def subscribe(self, deliver: Callable[[str, bytes], None]) -> None:
        """Every message, retained ones first, delivered as the subscribing machine."""
        context = contextvars.copy_context()
        self._subscribers.append((deliver, context))
        for topic, payload in sorted(self._retained.items()):
            self.loop.call_soon(deliver, topic, payload, context=context)

    def unsubscribe_all(self) -> None:
        """The subscriber died (the manager crashed)."""
        self._subscribers.clear()

    def session(self, host: str, params: BrokerSessionParams) -> SimBrokerSession:
        return SimBrokerSession(self, host, params)

    def publish(self, topic: str, payload: bytes, retain: bool) -> None:
        if retain:
            self._retained[topic] = payload
        for deliver, context in self._subscribers:
            self.loop.call_soon(deliver, topic, payload, context=context)

    # -- faults -------------------------------------------------------------------

    def client_died(self, host: str) -> None:
        """The host's process is gone: its TCP connection closes, the will goes out now."""
        for session in [s for s in self._sessions.values() if s.host == host]:
            session.lost(will=True)

    def path_changed(self, host: str) -> None:
        """The host's heartbeat path was cut or healed."""
        for session in [s for s in self._sessions.values() if s.host == host]:
            session.path_changed()

    def crash(self) -> None:
        self.up = False
        for session in list(self._sessions.values()):
            session.lost(will=False)
        self._retained.clear()
        self._on_connection(False)

    def restart(self) -> None:
        self.up = True
        self._on_connection(True)

    def _attach(self, session: SimBrokerSession) -> None:
        old = self._sessions.get(session.params.client_id)
        if old is not None and old is not session:
            old.lost(will=False)  # taken over by the same client id
        self._sessions[session.params.client_id] = session

    def _detach(self, session: SimBrokerSession) -> None:
        if self._sessions.get(session.params.client_id) is session:
            del self._sessions[session.params.client_id]


class SimBrokerSession:
    """One client connection: what the agent's StatusPublisher drives (see BrokerSession)."""

    def __init__(self, broker: SimBroker, host: str, params: BrokerSessionParams) -> None:
        self.broker = broker
        self.host = host
        self.params = params
        self.topic = params.topic
        self.echo_topic = params.echo_topic
        self._ended: asyncio.Future[None] | None = None
        self._on_echo: Callable[[bytes], None] | None = None
        self._broker_timer: asyncio.TimerHandle | None = None
        self._client_timer: asyncio.TimerHandle | None = None
        self._machine = current_machine.get()

    def _path(self) -> bool:
        return self.broker._path_open(self.host)

    async def open(self) -> None:
        if not self.broker.up:
            raise BrokerUnavailable("connection refused")
        if not self._path():
            await asyncio.sleep(self.params.timeout_s)
            raise BrokerUnavailable("timed out")
        self._ended = self.broker.loop.create_future()
        self.broker._attach(self)
        self._heard_from_client()
        self.path_changed()

    def _alive(self) -> asyncio.Future[None]:
        if self._ended is None or self._ended.done():
            raise BrokerUnavailable("connection lost")
        return self._ended

    async def publish_status(self, payload: bytes) -> None:
        self._alive()
        if not self._path():
            await asyncio.sleep(self.params.timeout_s)
            raise BrokerUnavailable("no acknowledgement in time")
        self._heard_from_client()
        self.broker.publish(self.topic, payload, retain=True)

    async def publish_heartbeat(self, topic: str, payload: bytes) -> None:
        self._alive()
        if not self._path():
            return  # QoS 0 into a cut network: gone, and nobody says so
        self._heard_from_client()
        self.broker.publish(topic, payload, retain=False)
        if topic == self.echo_topic and self._on_echo is not None:
            self.broker.loop.call_soon(self._echo, payload)

    def _echo(self, payload: bytes) -> None:
        if self._on_echo is not None and self._ended is not None and not self._ended.done():
            self._on_echo(payload)

    async def receive_echoes(self, on_echo: Callable[[bytes], None]) -> None:
        ended = self._alive()
        self._on_echo = on_echo
        try:
            await asyncio.shield(ended)
        finally:
            self._on_echo = None
        raise BrokerUnavailable("connection lost")

    async def close(self) -> None:
        """A clean disconnect: no will."""
        self.lost(will=False)

    # -- timers -------------------------------------------------------------------

    def _heard_from_client(self) -> None:
        if self._broker_timer is not None:
            self._broker_timer.cancel()
        delay = BROKER_GRACE * self.params.keepalive_s
        self._broker_timer = self.broker.loop.call_later(delay, self.lost, True)

    def path_changed(self) -> None:
        if self._ended is None or self._ended.done():
            return
        if self._path():
            if self._client_timer is not None:
                self._client_timer.cancel()
                self._client_timer = None
            return
        if self._client_timer is None:
            delay = CLIENT_GRACE * self.params.keepalive_s
            self._client_timer = self.broker.loop.call_later(delay, self.lost, False)

    def lost(self, will: bool) -> None:
        """The connection is over: by the broker's keepalive or the client's death (with
        the will), or by the client's keepalive, a takeover or a clean close (without)."""
        if self._ended is None or self._ended.done():
            return
        self._ended.set_result(None)
        for timer in (self._broker_timer, self._client_timer):
            if timer is not None:
                timer.cancel()
        self.broker._detach(self)
        if will and self.broker.up:
            self.broker.publish(self.topic, self.params.offline_payload, retain=True)

"""The manager's MQTT link: heartbeats and status in, events and host states out.

Translates only. It subscribes to every host's heartbeat and retained status, turns
each valid payload into a call of the detector-facing callbacks, and publishes what
the event bus hands it. Payloads come from the network and are untrusted: a bad one
is logged once per host and dropped. A lost connection is retried with growing waits
(tenacity); the callbacks are told when the link goes up or down, because the
detector must judge no host while the manager itself cannot hear the heartbeats.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiomqtt
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from havm.contract.broker_access import MANAGER_USER, password
from havm.contract.heartbeat_auth import Freshness, host_key, mac_valid
from manager.core.model import Event
from manager.core.settings import Settings

log = logging.getLogger(__name__)

TOPIC_PREFIX = "havm/v1/hosts/"
HEARTBEATS = "havm/v1/hosts/+/heartbeat"
STATUSES = "havm/v1/hosts/+/status"
EVENTS = "havm/v1/events"
HOST_STATE = "havm/v1/state/hosts/{host}"
CLUSTER_STATE = "havm/v1/state/clusters/{cluster}"


@dataclass(frozen=True)
class Heartbeat:
    host: str
    boot_id: str
    seq: int


@dataclass(frozen=True)
class Status:
    host: str
    online: bool
    boot_id: str
    # Offline on purpose: the agent announced it leaves (a graceful shutdown), rather
    # than the broker telling its last will.
    stopped: bool = False


class BadPayload(ValueError):
    """A message that does not follow the documented shape."""


def host_message(topic: str, payload: bytes) -> tuple[str, str, dict[str, Any]] | None:
    """(host, "heartbeat" or "status", the JSON object) of a host's message; None for a
    topic of no interest; BadPayload when the payload is no JSON object."""
    if not topic.startswith(TOPIC_PREFIX):
        return None
    parts = topic[len(TOPIC_PREFIX) :].split("/")
    if len(parts) != 2 or parts[1] not in ("heartbeat", "status") or not parts[0]:
        return None
    host, kind = parts
    try:
        data: Any = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise BadPayload(f"{kind} of host {host} is not JSON") from None
    if not isinstance(data, dict):
        raise BadPayload(f"{kind} of host {host} is not a JSON object")
    return host, kind, data


def parse_message(topic: str, payload: bytes) -> Heartbeat | Status | None:
    """A heartbeat or status from a message; None for a topic of no interest."""
    message = host_message(topic, payload)
    if message is None:
        return None
    host, kind, data = message
    named = data.get("host", host)
    if named != host:
        raise BadPayload(f"{kind} on the topic of host {host} names host {named!r}")
    boot_id = data.get("boot_id", "")
    if not isinstance(boot_id, str):
        raise BadPayload(f"{kind} of host {host}: boot_id is not a string")
    if kind == "heartbeat":
        seq = data.get("seq", 0)
        if not isinstance(seq, int) or isinstance(seq, bool):
            raise BadPayload(f"heartbeat of host {host}: seq is not an integer")
        return Heartbeat(host, boot_id, seq)
    state = data.get("state")
    if state not in ("online", "offline", "stopped"):
        raise BadPayload(f"status of host {host}: state must be online, offline or stopped, got {state!r}")
    return Status(host, state == "online", boot_id, stopped=state == "stopped")


# How far a signed message's `time` may lie from this machine's clock: a heartbeat
# recorded off the broker and published again later is refused, whatever the manager
# heard before it restarted.
MAX_AGE_S = 30.0


class Authenticator:
    """Checks that a heartbeat or status was signed by its host's key and is new (see
    havm.contract.heartbeat_auth); says why not."""

    def __init__(self, cluster_secret: bytes, wall_clock: Callable[[], float] = time.time) -> None:
        self._secret = cluster_secret
        self.broker_password = password(cluster_secret, MANAGER_USER)
        self._keys: dict[str, bytes] = {}
        self._fresh = Freshness()
        self._wall_clock = wall_clock

    def problem(self, topic: str, payload: bytes) -> tuple[str, str] | None:
        """(host, why) for a message to refuse; None for one to take (or one of no
        interest, or malformed: parse_message says what is wrong with those)."""
        try:
            message = host_message(topic, payload)
        except BadPayload:
            return None
        if message is None:
            return None
        host, kind, data = message
        key = self._keys.get(host)
        if key is None:
            key = self._keys[host] = host_key(self._secret, host)
        if not mac_valid(data, key):
            return host, f"a {kind} not signed with the key of host {host}"
        sent_at = data.get("time")
        if not isinstance(sent_at, int | float) or isinstance(sent_at, bool):
            return host, f"a signed {kind} of host {host} without its time"
        if kind == "status" and data.get("state") == "offline":
            kind = "will"  # written at connect time: its age is the session's
        age = self._wall_clock() - sent_at
        if abs(age) > MAX_AGE_S and kind != "will":
            return host, f"a {kind} of host {host} written {age:.0f} s ago (a replay)"
        if not self._fresh.accept(host, kind, float(sent_at)):
            return host, f"a {kind} of host {host} older than one already heard (a replay)"
        return None


class MqttLink:
    def __init__(
        self,
        host: str,
        port: int,
        settings: Settings,
        on_message: Callable[[Heartbeat | Status], None],
        on_connection: Callable[[bool], None],
        authenticator: Authenticator | None = None,
        on_refused: Callable[[str, str], None] = lambda host, why: None,
    ) -> None:
        self._host = host
        self._port = port
        self._settings = settings
        self._on_message = on_message
        self._on_connection = on_connection
        # None: every well-formed message is taken (a cluster without a heartbeat secret).
        self._authenticator = authenticator
        self._on_refused = on_refused
        self._outgoing: asyncio.Queue[tuple[str, bytes, bool]] = asyncio.Queue(maxsize=10_000)
        self._complained: set[str] = set()
        self.connected = False

    def publish(self, topic: str, payload: dict[str, Any], retain: bool = False) -> None:
        """Queue a message; dropped (with a warning) if the broker is away for long."""
        try:
            self._outgoing.put_nowait((topic, json.dumps(payload).encode(), retain))
        except asyncio.QueueFull:
            log.warning("MQTT outgoing queue full: message on %s dropped", topic)

    def publish_event(self, event: Event, host_state: str | None) -> None:
        """The event on the stream; for a host state change, the host's retained state too."""
        self.publish(
            EVENTS,
            {
                "time": event.time.isoformat().replace("+00:00", "Z"),
                "kind": event.kind,
                "host": event.host,
                "vm": event.vm,
                "cluster": event.cluster,
                "detail": event.detail,
                "old_state": event.old_state or None,
                "new_state": event.new_state or None,
            },
        )
        if event.kind == "host_state" and event.host and host_state is not None:
            self.publish(HOST_STATE.format(host=event.host), {"state": host_state}, retain=True)

    def publish_cluster_state(self, cluster: str, state: dict[str, Any]) -> None:
        """A cluster's reserve verdict, retained so a subscriber learns it at once."""
        self.publish(CLUSTER_STATE.format(cluster=cluster), state, retain=True)

    async def run(self) -> None:
        """Stay connected until cancelled."""
        while True:
            retrying = AsyncRetrying(
                wait=wait_exponential(
                    multiplier=self._settings.broker_reconnect_min_s,
                    min=self._settings.broker_reconnect_min_s,
                    max=self._settings.broker_reconnect_max_s,
                ),
                retry=retry_if_exception_type((aiomqtt.MqttError, OSError)),
                before_sleep=lambda state: log.warning(
                    "broker %s:%d unreachable (%s); retrying",
                    self._host,
                    self._port,
                    state.outcome.exception() if state.outcome else "",
                ),
            )
            async for attempt in retrying:
                with attempt:
                    await self._session()

    async def _session(self) -> None:
        """One connection: raises if it cannot connect, returns when it drops."""
        client = aiomqtt.Client(
            self._host,
            self._port,
            identifier=f"havm-manager-{id(self):x}",
            # With the cluster's secret, the manager logs in as the broker's `manager`.
            username=MANAGER_USER if self._authenticator is not None else None,
            password=self._authenticator.broker_password if self._authenticator is not None else None,
            keepalive=max(2, int(self._settings.heartbeat_window_s)),
        )
        async with client:
            self._set_connected(True)
            sender = asyncio.get_running_loop().create_task(self._send(client))
            try:
                await client.subscribe(HEARTBEATS, qos=0)
                await client.subscribe(STATUSES, qos=1)
                async for message in client.messages:
                    self._receive(str(message.topic), message.payload)
            except aiomqtt.MqttError as error:
                log.warning("lost the broker %s:%d: %s", self._host, self._port, error)
            finally:
                sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)
                self._set_connected(False)

    def _set_connected(self, connected: bool) -> None:
        if connected != self.connected:
            self.connected = connected
            log.info("broker %s:%d %s", self._host, self._port, "connected" if connected else "disconnected")
            self._on_connection(connected)

    async def _send(self, client: aiomqtt.Client) -> None:
        while True:
            topic, payload, retain = await self._outgoing.get()
            await client.publish(topic, payload, qos=1 if retain else 0, retain=retain)

    def _receive(self, topic: str, payload: Any) -> None:
        raw = payload if isinstance(payload, bytes | bytearray) else str(payload or "").encode()
        if self._authenticator is not None:
            refused = self._authenticator.problem(topic, bytes(raw))
            if refused is not None:
                self._on_refused(*refused)
                return
        try:
            parsed = parse_message(topic, bytes(raw))
        except BadPayload as error:
            host = topic[len(TOPIC_PREFIX) :].split("/")[0]
            if host not in self._complained:
                self._complained.add(host)
                log.warning("ignoring bad MQTT payload (reported once per host): %s", error)
            return
        if parsed is not None:
            self._on_message(parsed)

"""Keeps this host's retained status and heartbeats on the broker, whatever the broker does.

Observe the connection, publish `online` on connect and every `status_interval_s`,
a heartbeat every `heartbeat_interval_s`, reconnect with a capped backoff when the
broker goes away, and announce `stopped` when the agent stops on purpose. A broker
problem is logged, never fatal to the agent.

The publisher also tells when the broker last proved it hears this host: when it
acknowledged the status, or sent one of this boot's heartbeats back (the session is
subscribed to them). That moment, not whether a connection looks open, is one of the
host's two contacts with the cluster that the isolation watch counts from.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential

from node_agent.core.broker import BrokerSession, BrokerUnavailable
from node_agent.core.config import AgentSettings
from node_agent.core.views import HostLoad, heartbeat_payload, heartbeat_topic

log = logging.getLogger(__name__)


class StatusPublisher:
    def __init__(
        self,
        settings: AgentSettings,
        open_session: Callable[[], BrokerSession],
        online: dict[str, object],
        stopped: Callable[[str], dict[str, object]],
        broker: str,
        host: str,
        boot_id: str,
        load: Callable[[], HostLoad],
        clock: Callable[[], float],
        seal: Callable[[dict[str, object]], dict[str, object]] = lambda payload: payload,
    ) -> None:
        self._settings = settings
        # Signs a heartbeat with this host's key (havm.contract.heartbeat_auth).
        self._seal = seal
        self._host = host
        self._boot_id = boot_id
        self._load = load
        self._clock = clock
        self._heartbeat_topic = heartbeat_topic(host)
        # Counts per boot, not per connection: a receiver tells a reconnect from a restart.
        self.heartbeat_seq = 0
        # A session is open: no proof that the broker hears this host (see last_contact).
        self.connected = False
        # When the broker last proved it hears this host (clock time); None before it ever did.
        self.last_contact: float | None = None
        self._open_session = open_session
        # Sealed (signed, with the time) each time it is published: a status is news.
        self._online = online
        self._stopped = stopped
        # What `stopped` says; stop() gives the reason.
        self._farewell = json.dumps(stopped("")).encode()
        self._announced_stop = False
        self._broker = broker
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="broker-status")

    async def stop(self, reason: str = "") -> None:
        """Announce `stopped` (with `reason`), disconnect, and end the loop."""
        self._farewell = json.dumps(self._stopped(reason)).encode()
        self._stopping.set()
        if self._task is None:
            return
        try:
            await asyncio.wait_for(self._task, self._settings.mqtt_timeout_s * 2)
        except (TimeoutError, asyncio.CancelledError):
            log.warning("the broker did not answer in time; leaving it")

    def _note_contact(self) -> None:
        self.last_contact = self._clock()

    def _on_echo(self, payload: bytes) -> None:
        """A heartbeat came back from the broker: contact, if it is one of this boot's."""
        try:
            beat = json.loads(payload)
        except ValueError:
            return  # someone else's message on this host's topic: it proves nothing of ours
        if isinstance(beat, dict) and beat.get("boot_id") == self._boot_id:
            self._note_contact()

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                session = await self._connect()
                if session is None:
                    break
                try:
                    await self._serve(session)
                finally:
                    await session.close()
            except BrokerUnavailable as exc:
                log.warning("lost the broker at %s: %s; reconnecting", self._broker, exc)
            except Exception:
                log.exception("broker status loop failed; starting it again")
                await self._pause(self._settings.mqtt_reconnect_max_s)
        if not self._announced_stop:
            await self._announce_stop_anew()

    async def _connect(self) -> BrokerSession | None:
        retrying = AsyncRetrying(
            wait=wait_exponential(multiplier=0.1, max=self._settings.mqtt_reconnect_max_s),
            retry=retry_if_exception_type(BrokerUnavailable),
            sleep=self._pause,
            before_sleep=self._log_retry,
        )
        async for attempt in retrying:
            with attempt:
                if self._stopping.is_set():
                    return None
                session = self._open_session()
                await session.open()
                return session
        return None

    async def _serve(self, session: BrokerSession) -> None:
        lost = asyncio.create_task(session.receive_echoes(self._on_echo))
        self.connected = True
        loop = asyncio.get_running_loop()
        next_status = next_beat = loop.time()
        online = False
        try:
            while True:
                if self._stopping.is_set():
                    await self._announce_stop(session)
                    return
                if loop.time() >= next_status:
                    await session.publish_status(json.dumps(self._seal(self._online)).encode())
                    self._note_contact()  # acknowledged: the broker has it
                    if not online:
                        log.info("online on the broker at %s", self._broker)
                        online = True
                    next_status = loop.time() + self._settings.status_interval_s
                if loop.time() >= next_beat:
                    await self._beat(session)
                    # Scheduled from the plan, not from now: beats do not drift.
                    next_beat = max(next_beat + self._settings.heartbeat_interval_s, loop.time())
                stop = asyncio.create_task(self._stopping.wait())
                await asyncio.wait(
                    {lost, stop},
                    timeout=max(0.0, min(next_beat, next_status) - loop.time()),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                stop.cancel()
                if lost.done():
                    lost.result()  # raises BrokerUnavailable
        finally:
            self.connected = False
            lost.cancel()
            with contextlib.suppress(asyncio.CancelledError, BrokerUnavailable):
                await lost

    async def _announce_stop(self, session: BrokerSession) -> None:
        await session.publish_status(self._farewell)
        self._announced_stop = True
        log.info("stopped on the broker")

    async def _announce_stop_anew(self) -> None:
        """The agent stops while the broker is away: one more try, so that the cluster
        hears that this host left on purpose rather than the last will's `offline`."""
        session = self._open_session()
        try:
            await session.open()
            await self._announce_stop(session)
        except BrokerUnavailable as exc:
            log.warning(
                "cannot tell the broker at %s that this host stops: %s; it announces offline",
                self._broker,
                exc,
            )
        finally:
            await session.close()

    async def _beat(self, session: BrokerSession) -> None:
        self.heartbeat_seq += 1
        seq, now = self.heartbeat_seq, self._clock()
        payload = self._seal(heartbeat_payload(self._host, self._boot_id, seq, now, self._load()))
        await session.publish_heartbeat(self._heartbeat_topic, json.dumps(payload).encode())

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake at once when the agent stops."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    def _log_retry(self, state: RetryCallState) -> None:
        if state.attempt_number == 1 and state.outcome is not None:
            log.warning(
                "cannot reach the broker at %s: %s; retrying", self._broker, state.outcome.exception()
            )

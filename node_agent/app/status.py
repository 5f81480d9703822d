"""Keeps this host's retained status and heartbeats on the broker, whatever the broker does.

Observe the connection, publish `online` on connect and every `status_interval_s`,
a heartbeat every `heartbeat_interval_s`, reconnect with a capped backoff when the
broker goes away, and publish `offline` on a graceful stop. A broker problem is
logged, never fatal to the agent. Whether the broker is reachable right now is
offered to the isolation watch: it is one of the host's two paths to the cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential

from node_agent.adapters.mqtt_status import BrokerSession, BrokerUnavailable
from node_agent.core.config import AgentSettings
from node_agent.core.views import HostLoad, heartbeat_payload, heartbeat_topic

log = logging.getLogger(__name__)


class StatusPublisher:
    def __init__(
        self,
        settings: AgentSettings,
        open_session: Callable[[], BrokerSession],
        online: dict[str, object],
        offline: dict[str, object],
        broker: str,
        host: str,
        boot_id: str,
        load: Callable[[], HostLoad],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._host = host
        self._boot_id = boot_id
        self._load = load
        self._clock = clock
        self._heartbeat_topic = heartbeat_topic(host)
        # Counts per boot, not per connection: a receiver tells a reconnect from a restart.
        self.heartbeat_seq = 0
        self.connected = False
        self._open_session = open_session
        self._online = json.dumps(online).encode()
        self._offline = json.dumps(offline).encode()
        self._broker = broker
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="broker-status")

    async def stop(self) -> None:
        """Publish offline if connected, disconnect, and end the loop."""
        self._stopping.set()
        if self._task is None:
            return
        try:
            await asyncio.wait_for(self._task, self._settings.mqtt_timeout_s * 2)
        except (TimeoutError, asyncio.CancelledError):
            log.warning("the broker did not answer in time; leaving it")

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                session = await self._connect()
                if session is None:
                    return
                try:
                    await self._serve(session)
                finally:
                    await session.close()
            except BrokerUnavailable as exc:
                log.warning("lost the broker at %s: %s; reconnecting", self._broker, exc)
            except Exception:
                log.exception("broker status loop failed; starting it again")
                await self._pause(self._settings.mqtt_reconnect_max_s)

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
        await session.publish_status(self._online)
        self.connected = True
        log.info("online on the broker at %s", self._broker)
        lost = asyncio.create_task(session.wait_lost())
        loop = asyncio.get_running_loop()
        next_status = loop.time() + self._settings.status_interval_s
        next_beat = loop.time()
        try:
            while True:
                if loop.time() >= next_beat:
                    await self._beat(session)
                    # Scheduled from the plan, not from now: beats do not drift.
                    next_beat = max(next_beat + self._settings.heartbeat_interval_s, loop.time())
                if loop.time() >= next_status:
                    await session.publish_status(self._online)
                    next_status = loop.time() + self._settings.status_interval_s
                stop = asyncio.create_task(self._stopping.wait())
                await asyncio.wait(
                    {lost, stop},
                    timeout=max(0.0, min(next_beat, next_status) - loop.time()),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                stop.cancel()
                if lost.done():
                    lost.result()  # raises BrokerUnavailable
                if self._stopping.is_set():
                    await session.publish_status(self._offline)
                    log.info("offline on the broker")
                    return
        finally:
            self.connected = False
            lost.cancel()
            with contextlib.suppress(asyncio.CancelledError, BrokerUnavailable):
                await lost

    async def _beat(self, session: BrokerSession) -> None:
        self.heartbeat_seq += 1
        seq, now = self.heartbeat_seq, self._clock()
        payload = heartbeat_payload(self._host, self._boot_id, seq, now, self._load())
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

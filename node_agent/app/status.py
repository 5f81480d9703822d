"""Keeps this host's retained status on the broker up to date, whatever the broker does.

Observe the connection, publish `online` on connect and every `status_interval_s`,
reconnect with a capped backoff when the broker goes away, and publish `offline`
on a graceful stop. A broker problem is logged, never fatal to the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential

from node_agent.adapters.mqtt_status import BrokerSession, BrokerUnavailable
from node_agent.core.config import AgentSettings

log = logging.getLogger(__name__)


class StatusPublisher:
    def __init__(
        self,
        settings: AgentSettings,
        open_session: Callable[[], BrokerSession],
        online: dict[str, object],
        offline: dict[str, object],
        broker: str,
    ) -> None:
        self._settings = settings
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
        log.info("online on the broker at %s", self._broker)
        lost = asyncio.create_task(session.wait_lost())
        try:
            while True:
                stop = asyncio.create_task(self._stopping.wait())
                await asyncio.wait(
                    {lost, stop},
                    timeout=self._settings.status_interval_s,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                stop.cancel()
                if lost.done():
                    lost.result()  # raises BrokerUnavailable
                if self._stopping.is_set():
                    await session.publish_status(self._offline)
                    log.info("offline on the broker")
                    return
                await session.publish_status(self._online)
        finally:
            lost.cancel()
            with contextlib.suppress(asyncio.CancelledError, BrokerUnavailable):
                await lost

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake at once when the agent stops."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    def _log_retry(self, state: RetryCallState) -> None:
        if state.attempt_number == 1 and state.outcome is not None:
            log.warning(
                "cannot reach the broker at %s: %s; retrying", self._broker, state.outcome.exception()
            )

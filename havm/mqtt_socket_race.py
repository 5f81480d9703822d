"""One harmless race of the MQTT client, told in one log line instead of a traceback.

aiomqtt hands paho's socket to the event loop with `add_writer`/`add_reader`; when the
connection drops (a broker killed, a network cut) paho may close that socket just
before the loop registers it, and asyncio then logs "Exception in callback
add_writer(...)" with a traceback of `Bad file descriptor`. Nothing is lost: the
client notices the broken connection and reconnects. The manager and every agent
install this handler so that the log says so in one line.
"""

from __future__ import annotations

import asyncio
import errno
import logging
from typing import Any


def quiet_closed_socket_race(loop: asyncio.AbstractEventLoop, log: logging.Logger) -> None:
    """Install on `loop` a handler that turns that race into one warning and passes
    every other exception to the loop's default handler."""

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        message = str(context.get("message", ""))
        watching = "add_writer" in message or "add_reader" in message
        if watching and isinstance(exc, OSError) and exc.errno == errno.EBADF:
            log.warning("the MQTT client's socket closed while it was being watched; it reconnects")
            return
        loop.default_exception_handler(context)

    loop.set_exception_handler(handle)

"""One-line log records on stderr, the same shape in every havm process.

`2026-11-25T17:00:00.123Z INFO node_agent.app.host node1: message`: UTC time,
level, logger, the host the line is about, then the sentence. Tracebacks are folded
into the line so that a log stays one record per line.
"""

from __future__ import annotations

import logging
import sys
import time


class OneLineFormatter(logging.Formatter):
    def __init__(self, host: str) -> None:
        super().__init__()
        self.host = host

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{stamp}.{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            trace = self.formatException(record.exc_info)
            message = f"{message} | {trace}"
        message = message.replace("\n", " | ")
        return f"{self.formatTime(record)} {record.levelname} {record.name} {self.host}: {message}"


def setup_logging(host: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter(host))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Library chatter is only useful when debugging them.
    for noisy in ("grpc", "asyncio", "aiomqtt", "paho"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))

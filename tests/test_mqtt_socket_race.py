"""The MQTT client's closed-socket race is one warning; anything else the loop reports
still reaches asyncio's default handler."""

from __future__ import annotations

import asyncio
import errno
import logging

import pytest

from havm.mqtt_socket_race import quiet_closed_socket_race


def test_the_race_is_one_warning_and_other_errors_pass_on(caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.new_event_loop()
    passed_on: list[dict] = []
    loop.default_exception_handler = passed_on.append  # type: ignore[method-assign]
    try:
        quiet_closed_socket_race(loop, logging.getLogger("test.race"))
        race = {
            "message": "Exception in callback BaseSelectorEventLoop.add_writer(13, <function Client...>)",
            "exception": OSError(errno.EBADF, "Bad file descriptor"),
        }
        with caplog.at_level(logging.WARNING, logger="test.race"):
            loop.call_exception_handler(race)
        assert [r.getMessage() for r in caplog.records] == [
            "the MQTT client's socket closed while it was being watched; it reconnects"
        ]
        assert passed_on == []
        other = {"message": "Exception in callback something_else()", "exception": OSError(errno.EBADF, "x")}
        loop.call_exception_handler(other)
        unrelated = {"message": "add_writer failed", "exception": ValueError("not an OS error")}
        loop.call_exception_handler(unrelated)
        assert passed_on == [other, unrelated]
    finally:
        loop.close()

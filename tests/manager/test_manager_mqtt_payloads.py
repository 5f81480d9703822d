"""Heartbeat and status payloads come from the network: bad ones are refused, never a crash."""

from __future__ import annotations

import logging

import pytest

from manager.adapters.mqtt import BadPayload, Heartbeat, MqttLink, Status, parse_message
from manager.core.settings import Settings


def test_a_heartbeat_and_statuses_parse() -> None:
    beat = parse_message(
        "havm/v1/hosts/node1/heartbeat", b'{"host":"node1","boot_id":"b1","seq":7,"time":1.0}'
    )
    assert beat == Heartbeat("node1", "b1", 7)
    assert parse_message("havm/v1/hosts/node1/status", b'{"state":"offline"}') == Status("node1", False, "")
    online = parse_message("havm/v1/hosts/node1/status", b'{"state":"online","host":"node1","boot_id":"b2"}')
    assert online == Status("node1", True, "b2")


@pytest.mark.parametrize(
    ("topic", "payload", "why"),
    [
        ("havm/v1/hosts/node1/heartbeat", b"\xff\xfe", "not JSON"),
        ("havm/v1/hosts/node1/heartbeat", b"[1, 2]", "not a JSON object"),
        ("havm/v1/hosts/node1/heartbeat", b'{"host":"node2"}', "names host 'node2'"),
        ("havm/v1/hosts/node1/heartbeat", b'{"seq":"x"}', "seq is not an integer"),
        ("havm/v1/hosts/node1/heartbeat", b'{"boot_id": 5}', "boot_id is not a string"),
        ("havm/v1/hosts/node1/status", b'{"state":"sleepy"}', "state must be online, offline or stopped"),
    ],
)
def test_bad_payloads_are_refused_with_a_sentence(topic: str, payload: bytes, why: str) -> None:
    with pytest.raises(BadPayload, match=why):
        parse_message(topic, payload)


def test_other_topics_are_of_no_interest() -> None:
    assert parse_message("havm/v1/events", b"{}") is None
    assert parse_message("havm/v1/hosts/node1/other", b"{}") is None


def test_a_bad_payload_is_logged_once_per_host(caplog: pytest.LogCaptureFixture) -> None:
    heard: list[object] = []
    link = MqttLink("127.0.0.1", 1, Settings(), heard.append, lambda up: None)
    with caplog.at_level(logging.WARNING, logger="manager.adapters.mqtt"):
        for _ in range(3):
            link._receive("havm/v1/hosts/node1/heartbeat", b"nope")
        link._receive("havm/v1/hosts/node1/heartbeat", b'{"seq": 1}')
    assert len([r for r in caplog.records if "bad MQTT payload" in r.message]) == 1
    assert heard == [Heartbeat("node1", "", 1)]

"""The manager's MQTT adapter refuses heartbeats and statuses its host did not sign, and
replays of ones it did; what it takes still goes through the usual parsing."""

from __future__ import annotations

import json

from havm.contract.heartbeat_auth import host_key, signed
from manager.adapters.mqtt import MAX_AGE_S, Authenticator

SECRET = bytes(range(32))
NOW = 1_000_000.0
BEAT = "havm/v1/hosts/node1/heartbeat"
STATUS = "havm/v1/hosts/node1/status"


def payload(data: dict, host: str = "node1") -> bytes:
    return json.dumps(signed(data, host_key(SECRET, host))).encode()


def beat(seq: int, at: float) -> dict:
    return {"host": "node1", "boot_id": "b1", "seq": seq, "time": at}


def test_signed_and_new_is_taken_the_rest_says_why() -> None:
    auth = Authenticator(SECRET, wall_clock=lambda: NOW)
    assert auth.problem(BEAT, payload(beat(1, NOW))) is None
    assert auth.problem(BEAT, payload(beat(2, NOW + 1))) is None
    unsigned = json.dumps(beat(3, NOW + 2)).encode()
    assert auth.problem(BEAT, unsigned) == ("node1", "a heartbeat not signed with the key of host node1")
    # Signed by another host's key (a compromised agent speaking for a neighbour).
    assert auth.problem(BEAT, payload(beat(3, NOW + 2), host="node2")) == (
        "node1",
        "a heartbeat not signed with the key of host node1",
    )
    assert auth.problem(BEAT, payload(beat(2, NOW + 1))) == (
        "node1",
        "a heartbeat of host node1 older than one already heard (a replay)",
    )
    stale = NOW - MAX_AGE_S - 5
    assert auth.problem(BEAT, payload(beat(9, stale))) == (
        "node1",
        "a heartbeat of host node1 written 35 s ago (a replay)",
    )


def test_a_last_will_written_long_ago_is_taken_a_stale_stopped_is_not() -> None:
    auth = Authenticator(SECRET, wall_clock=lambda: NOW)
    online = {"state": "online", "host": "node1", "boot_id": "b1", "time": NOW}
    assert auth.problem(STATUS, payload(online)) is None
    will = {"state": "offline", "host": "node1", "time": NOW - 3600}
    assert auth.problem(STATUS, payload(will)) is None
    stopped = {"state": "stopped", "host": "node1", "boot_id": "b0", "time": NOW - 100}
    assert auth.problem(STATUS, payload(stopped)) == (
        "node1",
        "a status of host node1 written 100 s ago (a replay)",
    )


def test_what_is_not_a_host_message_is_left_to_the_parser() -> None:
    auth = Authenticator(SECRET, wall_clock=lambda: NOW)
    assert auth.problem("havm/v1/events", b"{}") is None
    assert auth.problem(BEAT, b"not json") is None

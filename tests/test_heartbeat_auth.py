"""Heartbeat and status signatures: one key per host from the cluster's secret, any
change to a signed payload detected, and what counts as news (no replays)."""

from __future__ import annotations

from havm.contract.heartbeat_auth import MAC_FIELD, Freshness, host_key, mac_valid, signed

SECRET = bytes(range(32))


def test_each_host_has_its_own_key() -> None:
    assert host_key(SECRET, "node1") != host_key(SECRET, "node2")
    assert host_key(SECRET, "node1") == host_key(SECRET, "node1")
    assert host_key(bytes(32), "node1") != host_key(SECRET, "node1")


def test_a_signed_payload_verifies_and_any_change_breaks_it() -> None:
    key = host_key(SECRET, "node1")
    beat = signed({"host": "node1", "boot_id": "b1", "seq": 7, "time": 100.5}, key)
    assert MAC_FIELD in beat and mac_valid(beat, key)
    assert not mac_valid({**beat, "seq": 8}, key)
    assert not mac_valid({**beat, "host": "node2"}, key)
    assert not mac_valid(beat, host_key(SECRET, "node2"))
    unsigned = {k: v for k, v in beat.items() if k != MAC_FIELD}
    assert not mac_valid(unsigned, key)
    assert not mac_valid({**unsigned, MAC_FIELD: 12}, key)


def test_heartbeats_must_be_newer_statuses_not_older_wills_always() -> None:
    fresh = Freshness()
    assert fresh.accept("node1", "heartbeat", 10.0)
    assert not fresh.accept("node1", "heartbeat", 10.0)  # the same one again: a replay
    assert not fresh.accept("node1", "heartbeat", 9.0)
    assert fresh.accept("node1", "heartbeat", 11.0)
    assert fresh.accept("node2", "heartbeat", 1.0)  # hosts apart
    assert fresh.accept("node1", "status", 5.0)
    assert fresh.accept("node1", "status", 5.0)  # republished as it was
    assert not fresh.accept("node1", "status", 4.0)
    assert fresh.accept("node1", "will", 1.0)

"""Heartbeats and statuses the manager can trust even when others publish on its broker.

Each agent signs what it publishes about itself (heartbeats, its retained status, its
last will) with an HMAC-SHA256 key of its own. The key is derived from one cluster
secret and the host's name, so the manager needs only the secret to check any host,
a host added at runtime included, and an agent's key tells nothing about another's.

The MAC covers the whole payload but its own field, and freshness is the receiver's
rule (see `Freshness`): a heartbeat's `time` must grow, so that a heartbeat recorded
off the broker and published again later is refused like a forged one. Pure but for
`read_secret_file`, which the manager's and the agents' entry points share.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SECRET_BYTES = 32
MAC_FIELD = "mac"
_KEY_LABEL = b"havm/v1 heartbeat key\x00"


def parse_secret(text: str) -> bytes | None:
    """The cluster secret a file holds (64 hexadecimal digits); None if it holds none."""
    text = text.strip()
    if len(text) != 2 * SECRET_BYTES or any(c not in "0123456789abcdef" for c in text):
        return None
    return bytes.fromhex(text)


class SecretFileError(ValueError):
    """The secret file cannot be read or holds no secret; the message says which."""


def read_secret_file(path: Path) -> bytes:
    """The cluster secret of a file; SecretFileError saying what is wrong with it."""
    try:
        secret = parse_secret(path.read_text())
    except (OSError, UnicodeDecodeError) as error:
        why = getattr(error, "strerror", None) or error
        raise SecretFileError(f"cannot read {path}: {why}") from None
    if secret is None:
        raise SecretFileError(f"{path} must hold 64 hexadecimal digits")
    return secret


def host_key(cluster_secret: bytes, host: str) -> bytes:
    """The key `host` signs with: one per host, derived from the cluster's secret."""
    return hmac.new(cluster_secret, _KEY_LABEL + host.encode(), hashlib.sha256).digest()


def _canonical(payload: Mapping[str, Any]) -> bytes:
    body = {k: v for k, v in payload.items() if k != MAC_FIELD}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def signed(payload: Mapping[str, Any], key: bytes) -> dict[str, Any]:
    """The payload with its MAC."""
    mac = hmac.new(key, _canonical(payload), hashlib.sha256).hexdigest()
    return {**payload, MAC_FIELD: mac}


def mac_valid(payload: Mapping[str, Any], key: bytes) -> bool:
    mac = payload.get(MAC_FIELD)
    if not isinstance(mac, str):
        return False
    expected = hmac.new(key, _canonical(payload), hashlib.sha256).hexdigest()
    return hmac.compare_digest(mac, expected)


@dataclass
class Freshness:
    """What a receiver accepts as new from each host: a heartbeat whose `time` is later
    than the last accepted heartbeat's, a status (`online`, `stopped`) no older than the
    last accepted status. A last will (`offline`) is written when the agent connects
    and only makes the receiver ask the host at once, so its time is not compared."""

    heartbeats: dict[str, float] = field(default_factory=dict)
    statuses: dict[str, float] = field(default_factory=dict)

    def accept(self, host: str, kind: str, sent_at: float) -> bool:
        """`kind`: "heartbeat", "status" or "will"."""
        if kind == "will":
            return True
        seen = self.heartbeats if kind == "heartbeat" else self.statuses
        last = seen.get(host)
        if last is not None and (sent_at <= last if kind == "heartbeat" else sent_at < last):
            return False
        seen[host] = sent_at
        return True

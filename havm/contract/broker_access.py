"""Who may connect to the cluster's MQTT broker, and what each may publish and read.

Every client logs in with a user name and a password derived from the cluster secret,
so that the broker, the manager and each agent need nothing but what they already
hold: the broker and the manager the secret, an agent its own heartbeat key.

| user          | publishes                          | subscribes to, receives         |
| ------------- | ---------------------------------- | ------------------------------- |
| `manager`     | `havm/v1/events`, `havm/v1/state/#` | `havm/v1/hosts/#`               |
| `host/NAME`   | `havm/v1/hosts/NAME/#`             | `havm/v1/hosts/NAME/#` (echoes) |
| `reader`      | nothing                            | `havm/v1/#`                     |

Anyone else, or a wrong password, is refused at CONNECT. One table serves both brokers:
the embedded amqtt asks `allows` through its plugins (havm.broker), and mosquitto gets
the same rules as the password and ACL files `mosquitto_files` writes.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import os
from collections.abc import Iterable

from havm.contract.heartbeat_auth import host_key

MANAGER_USER = "manager"
READER_USER = "reader"
HOST_USER_PREFIX = "host/"
_PASSWORD_LABEL = b"havm/v1 mqtt password\x00"


class Action(enum.Enum):
    PUBLISH = "publish"
    SUBSCRIBE = "subscribe"
    RECEIVE = "receive"


def host_user(host: str) -> str:
    return HOST_USER_PREFIX + host


def host_password(heartbeat_key: bytes) -> str:
    """An agent's broker password, from the key it signs its heartbeats with."""
    return hmac.new(heartbeat_key, _PASSWORD_LABEL + b"host", hashlib.sha256).hexdigest()


def password(cluster_secret: bytes, user: str) -> str | None:
    """The password of `user` (None for a user the cluster does not have)."""
    if user.startswith(HOST_USER_PREFIX) and len(user) > len(HOST_USER_PREFIX):
        return host_password(host_key(cluster_secret, user.removeprefix(HOST_USER_PREFIX)))
    if user in (MANAGER_USER, READER_USER):
        return hmac.new(cluster_secret, _PASSWORD_LABEL + user.encode(), hashlib.sha256).hexdigest()
    return None


def authenticated(cluster_secret: bytes, user: str | None, given: str | None) -> bool:
    expected = password(cluster_secret, user or "")
    return expected is not None and given is not None and hmac.compare_digest(expected, given)


def rules(user: str) -> dict[Action, tuple[str, ...]]:
    """The topic filters `user` may use for each action."""
    if user == MANAGER_USER:
        reads = ("havm/v1/hosts/#",)
        return {
            Action.PUBLISH: ("havm/v1/events", "havm/v1/state/#"),
            Action.SUBSCRIBE: reads,
            Action.RECEIVE: reads,
        }
    if user == READER_USER:
        return {Action.PUBLISH: (), Action.SUBSCRIBE: ("havm/v1/#",), Action.RECEIVE: ("havm/v1/#",)}
    if user.startswith(HOST_USER_PREFIX):
        own = (f"havm/v1/hosts/{user.removeprefix(HOST_USER_PREFIX)}/#",)
        return {Action.PUBLISH: own, Action.SUBSCRIBE: own, Action.RECEIVE: own}
    return {Action.PUBLISH: (), Action.SUBSCRIBE: (), Action.RECEIVE: ()}


def _covers(allowed: str, topic: str) -> bool:
    """Whether the filter `allowed` covers `topic` (a topic, or a subscription's filter,
    which must lie inside `allowed`: `+` in the request only where `allowed` has it)."""
    wanted, given = allowed.split("/"), topic.split("/")
    for index, level in enumerate(wanted):
        if level == "#":
            return True
        if index >= len(given):
            return False
        if given[index] == "#" or (given[index] == "+" and level != "+"):
            return False
        if level not in ("+", given[index]):
            return False
    return len(given) == len(wanted)


def allows(user: str | None, action: Action, topic: str) -> bool:
    if not user or not topic:
        return False
    return any(_covers(allowed, topic) for allowed in rules(user)[action])


def mosquitto_password_line(user: str, secret_password: str) -> str:
    """A mosquitto password file line (`$7$`: PBKDF2-SHA512, as mosquitto_passwd writes)."""
    salt = os.urandom(12)
    iterations = 101
    digest = hashlib.pbkdf2_hmac("sha512", secret_password.encode(), salt, iterations)
    encoded = base64.b64encode(salt).decode(), base64.b64encode(digest).decode()
    return f"{user}:$7${iterations}${encoded[0]}${encoded[1]}"


def mosquitto_files(cluster_secret: bytes, hosts: Iterable[str]) -> tuple[str, str]:
    """The password file and the ACL file of a mosquitto broker for these hosts."""
    users = [MANAGER_USER, READER_USER, *(host_user(h) for h in hosts)]
    passwords = []
    acl = ["# Written by havm: who may publish and read what (havm.contract.broker_access)."]
    for user in users:
        secret_password = password(cluster_secret, user)
        assert secret_password is not None
        passwords.append(mosquitto_password_line(user, secret_password))
        acl.append(f"\nuser {user}")
        table = rules(user)
        reads = set(table[Action.SUBSCRIBE]) | set(table[Action.RECEIVE])
        for topic in sorted(set(table[Action.PUBLISH]) | reads):
            access = (
                "readwrite"
                if topic in table[Action.PUBLISH] and topic in reads
                else ("write" if topic in table[Action.PUBLISH] else "read")
            )
            acl.append(f"topic {access} {topic}")
    return "\n".join(passwords) + "\n", "\n".join(acl) + "\n"

"""The broker's rules (havm.contract.broker_access), on both brokers a cluster runs:
the embedded amqtt (`python -m havm.broker --secret-file`) and mosquitto with the
files `havm up --mqtt-broker mosquitto` writes. Real brokers, real MQTT clients: what
one identity publishes on another's topic never reaches a subscriber.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from havm.cli.mosquitto_broker import write_mosquitto_files
from havm.contract.broker_access import (
    MANAGER_USER,
    READER_USER,
    Action,
    allows,
    authenticated,
    host_password,
    host_user,
    password,
)
from havm.contract.heartbeat_auth import host_key
from havm.ports import free_ports


def test_each_user_publishes_and_reads_its_own_topics_only() -> None:
    assert allows("host/node1", Action.PUBLISH, "havm/v1/hosts/node1/heartbeat")
    assert not allows("host/node1", Action.PUBLISH, "havm/v1/hosts/node2/heartbeat")
    assert not allows("host/node1", Action.PUBLISH, "havm/v1/events")
    assert not allows("host/node1", Action.SUBSCRIBE, "havm/v1/hosts/+/heartbeat")
    assert not allows("host/node1", Action.SUBSCRIBE, "#")
    assert allows(MANAGER_USER, Action.SUBSCRIBE, "havm/v1/hosts/+/heartbeat")
    assert allows(MANAGER_USER, Action.PUBLISH, "havm/v1/state/hosts/node1")
    assert not allows(MANAGER_USER, Action.PUBLISH, "havm/v1/hosts/node1/heartbeat")
    assert allows(READER_USER, Action.SUBSCRIBE, "havm/v1/#")
    assert not allows(READER_USER, Action.PUBLISH, "havm/v1/events")
    assert not allows(None, Action.SUBSCRIBE, "havm/v1/events")
    assert not allows("admin", Action.SUBSCRIBE, "havm/v1/events")


def test_passwords_are_per_user_and_an_agent_derives_its_own_from_its_key() -> None:
    secret = secrets.token_bytes(32)
    assert password(secret, host_user("node1")) == host_password(host_key(secret, "node1"))
    assert password(secret, host_user("node1")) != password(secret, host_user("node2"))
    assert authenticated(secret, MANAGER_USER, password(secret, MANAGER_USER))
    assert not authenticated(secret, MANAGER_USER, password(secret, READER_USER))
    assert not authenticated(secret, "someone", "x") and not authenticated(secret, None, None)
    assert password(secret, "host/") is None


class Broker:
    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.secret = secrets.token_bytes(32)
        secret_file = tmp_path / "secret"
        secret_file.write_text(self.secret.hex() + "\n")
        self.port = free_ports(1)[0]
        address = f"127.0.0.1:{self.port}"
        if kind == "mosquitto":
            if not (shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists()):
                if os.environ.get("CI"):
                    pytest.fail("mosquitto is not installed (.ci/run installs it)")
                pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
            config = write_mosquitto_files(tmp_path, address, self.secret, ["node1", "node2"])
            argv = [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(config)]
        else:
            argv = [
                sys.executable,
                "-m",
                "havm.broker",
                "--listen",
                address,
                "--secret-file",
                str(secret_file),
            ]
        self.log = tmp_path / "broker.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while True:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "the broker did not listen"
                time.sleep(0.05)

    def client(self, user: str | None, identifier: str, given: str | None = None) -> aiomqtt.Client:
        secret_password = given if given is not None else (password(self.secret, user) if user else None)
        return aiomqtt.Client(
            "127.0.0.1", self.port, identifier=identifier, username=user, password=secret_password
        )

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture(params=["amqtt", "mosquitto"])
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Broker]:
    broker = Broker(request.param, tmp_path)
    try:
        yield broker
    finally:
        broker.stop()


async def _collect(client: aiomqtt.Client, topic: str, seconds: float) -> list[bytes]:
    received = []
    try:
        async with asyncio.timeout(seconds):
            async for message in client.messages:
                if str(message.topic) == topic:
                    received.append(bytes(message.payload))
    except TimeoutError:
        pass
    return received


def test_strangers_and_wrong_passwords_are_refused_at_connect(broker: Broker) -> None:
    async def attempt(user: str | None, given: str | None) -> None:
        async with broker.client(user, "stranger", given):
            pass

    for user, given in ((None, None), ("host/node1", "guessed"), ("admin", "x"), (MANAGER_USER, "")):
        with pytest.raises(aiomqtt.MqttError):
            asyncio.run(attempt(user, given))


def test_what_one_identity_publishes_on_anothers_topic_reaches_nobody(broker: Broker) -> None:
    heartbeat = "havm/v1/hosts/node1/heartbeat"

    async def scenario() -> tuple[list[bytes], list[bytes], list[bytes]]:
        async with (
            broker.client(MANAGER_USER, "manager") as manager,
            broker.client(READER_USER, "reader") as reader,
            broker.client(host_user("node1"), "node1") as node1,
            broker.client(host_user("node2"), "node2") as node2,
        ):
            await manager.subscribe("havm/v1/hosts/+/heartbeat")
            await reader.subscribe("havm/v1/events")
            # node2 may not read node1's topics: whatever it subscribes to, nothing arrives.
            try:
                await node2.subscribe(heartbeat)
            except aiomqtt.MqttError:
                pass
            await asyncio.sleep(0.3)
            await node2.publish(heartbeat, b"forged by node2", qos=1)
            await reader.publish(heartbeat, b"forged by reader", qos=1)
            await node1.publish(heartbeat, b"from node1", qos=1)
            await node1.publish("havm/v1/events", b"event by node1", qos=1)
            await manager.publish("havm/v1/events", b"event by manager", qos=1)
            return (
                await _collect(manager, heartbeat, 1.0),
                await _collect(reader, "havm/v1/events", 0.5),
                await _collect(node2, heartbeat, 0.3),
            )

    heard, events, node2_heard = asyncio.run(scenario())
    assert heard == [b"from node1"]
    assert events == [b"event by manager"]
    assert node2_heard == []

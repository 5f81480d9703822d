"""The agent's retained status on a real MQTT broker process: the embedded amqtt broker
and mosquitto."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import grpc
import pytest
from agent_testkit import Agent, host_config, vm_spec, wait_until

from havm.ports import free_port
from havm.v1 import agent_pb2, common_pb2

OP = agent_pb2
ST = common_pb2

pytestmark = pytest.mark.integration

TOPIC = "havm/v1/hosts/node1/status"
HEARTBEAT_TOPIC = "havm/v1/hosts/node1/heartbeat"
BROKER_START_TIMEOUT_S = 15.0


class Broker:
    """A broker process on a fixed loopback port, restartable on that port: the embedded
    amqtt broker `havm up` runs, or Debian's mosquitto as containers and CI use."""

    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.kind = kind
        self.port = free_port()
        self.log = tmp_path / f"{kind}.log"
        if kind == "mosquitto":
            binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
            if not Path(binary).exists():
                if os.environ.get("CI"):
                    pytest.fail("mosquitto is not installed (.ci/run installs it)")
                pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
            config = tmp_path / "mosquitto.conf"
            config.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
            self.argv = [binary, "-c", str(config)]
        else:
            self.argv = [sys.executable, "-m", "havm.broker", "--listen", self.address]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + BROKER_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"broker exited:\n{self.log.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"broker not listening:\n{self.log.read_text()}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None


@pytest.fixture(params=["amqtt", "mosquitto"])
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Broker]:
    b = Broker(request.param, tmp_path)
    b.start()
    try:
        yield b
    finally:
        b.kill()


async def next_status(messages: Any, timeout: float = 10.0) -> dict[str, Any]:
    async def first() -> dict[str, Any]:
        async for message in messages:
            return json.loads(message.payload)
        raise AssertionError("no message")

    return await asyncio.wait_for(first(), timeout)


async def status_until(messages: Any, state: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status = await next_status(messages, max(0.1, deadline - time.monotonic()))
        if status["state"] == state:
            return status


async def heartbeat(messages: Any, timeout: float = 10.0) -> dict[str, Any]:
    """The next heartbeat among the messages, skipping status ones."""
    deadline = time.monotonic() + timeout
    while True:

        async def first() -> Any:
            async for message in messages:
                return message
            raise AssertionError("no message")

        message = await asyncio.wait_for(first(), max(0.1, deadline - time.monotonic()))
        if message.topic.matches(HEARTBEAT_TOPIC):
            return json.loads(message.payload)


def subscriber(broker: Broker, name: str) -> aiomqtt.Client:
    return aiomqtt.Client("127.0.0.1", broker.port, identifier=f"test-{name}-{os.getpid()}")


async def test_online_retained_then_last_will_then_graceful_stop_announced(
    start_agent,
    broker: Broker,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    config = host_config(tmp_path)
    agent: Agent = await asyncio.to_thread(start_agent, config, None, broker.address)
    async with subscriber(broker, "a") as client:
        await client.subscribe(TOPIC, qos=1)
        online = await status_until(client.messages, "online")
        boot_id = (await asyncio.to_thread(agent.inventory)).host.boot_id
        assert online == {
            "state": "online",
            "host": "node1",
            "address": agent.address,
            "profile": "hyperv-2008r2",
            "cluster": "cluster1",
            "boot_id": boot_id,
        }
        # Republished every status_interval_s (0.5 s here).
        assert (await status_until(client.messages, "online", timeout=3))["boot_id"] == boot_id

        await asyncio.to_thread(agent.kill9)
        assert await status_until(client.messages, "offline") == {"state": "offline"}

        again: Agent = await asyncio.to_thread(start_agent, config, agent.state_dir, broker.address)
        status = await status_until(client.messages, "online")
        assert status["boot_id"] != boot_id

        assert await asyncio.to_thread(again.terminate) == 0
        # A graceful stop is no failure: the host says it left, and which boot left.
        left = await status_until(client.messages, "stopped")
        assert left == status | {"state": "stopped", "reason": "the agent received SIGTERM"}

    # Retained: a late subscriber learns the host stopped on purpose.
    async with subscriber(broker, "late") as late:
        await late.subscribe(TOPIC, qos=1)
        assert (await next_status(late.messages))["state"] == "stopped"


async def test_agent_survives_the_broker_and_comes_back_online(
    start_agent,
    broker: Broker,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    agent: Agent = await asyncio.to_thread(start_agent, host_config(tmp_path), None, broker.address)
    async with subscriber(broker, "b") as client:
        await client.subscribe(TOPIC, qos=1)
        await status_until(client.messages, "online")
        await client.subscribe(HEARTBEAT_TOPIC, qos=0)
        before = await heartbeat(client.messages)

    broker.kill()
    await asyncio.sleep(0.5)
    inventory = await asyncio.to_thread(agent.inventory)  # still serving gRPC
    assert inventory.host.name == "node1"

    # A new broker knows nothing: the agent must reconnect and publish again.
    broker.start()
    async with subscriber(broker, "c") as client:
        await client.subscribe(TOPIC, qos=1)
        status = await status_until(client.messages, "online", timeout=10)
        assert status["boot_id"] == inventory.host.boot_id
        await client.subscribe(HEARTBEAT_TOPIC, qos=0)
        # The count goes on across connections: it starts at 1 again only with a new boot.
        after = await heartbeat(client.messages)
        assert after["boot_id"] == before["boot_id"] and after["seq"] > before["seq"]
    assert agent.proc.poll() is None
    assert "Traceback" not in agent.log()


def test_agent_starts_without_its_broker(start_agent, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    nowhere = f"127.0.0.1:{free_port()}"
    agent: Agent = start_agent(host_config(tmp_path), None, nowhere)
    assert agent.inventory().host.name == "node1"
    assert agent.terminate() == 0


async def next_message(messages: Any, timeout: float) -> aiomqtt.Message:
    async def first() -> aiomqtt.Message:
        async for message in messages:
            return message
        raise AssertionError("no message")

    return await asyncio.wait_for(first(), timeout)


async def test_heartbeats_count_up_and_stop_while_the_agent_is_frozen(
    start_agent,
    broker: Broker,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    config = host_config(tmp_path)
    agent: Agent = await asyncio.to_thread(start_agent, config, None, broker.address)
    await asyncio.to_thread(agent.create, vm_spec())
    await asyncio.to_thread(agent.operate, "vm-1", OP.VM_OPERATION_START)
    boot_id = (await asyncio.to_thread(agent.inventory)).host.boot_id
    async with subscriber(broker, "hb") as client:
        await client.subscribe(HEARTBEAT_TOPIC, qos=0)
        beats = []
        for _ in range(4):
            message = await next_message(client.messages, timeout=5)
            assert not message.retain
            beats.append(json.loads(message.payload))
        seqs = [b["seq"] for b in beats]
        assert seqs == list(range(seqs[0], seqs[0] + 4))
        assert seqs[0] >= 1
        assert beats[-1]["host"] == "node1" and beats[-1]["boot_id"] == boot_id
        assert abs(beats[-1]["time"] - time.time()) < 2
        assert beats[-1]["load"] == {"vms_running": 1, "memory_free_mb": 6144 - 1024}
        # About one beat per interval.
        assert 0.1 < (beats[-1]["time"] - beats[0]["time"]) / 3 < 0.4

        agent.proc.send_signal(signal.SIGSTOP)
        try:
            await asyncio.sleep(0.3)  # a beat already on its way may still arrive
            while True:
                try:
                    await next_message(client.messages, timeout=0.05)
                except TimeoutError:
                    break
            with pytest.raises(TimeoutError):
                await next_message(client.messages, timeout=1.0)
        finally:
            agent.proc.send_signal(signal.SIGCONT)
        after = json.loads((await next_message(client.messages, timeout=5)).payload)
        assert after["seq"] > seqs[-1] and after["boot_id"] == boot_id


def shutdown(agent: Agent, reason: str) -> agent_pb2.AgentServiceShutdownResponse:
    return agent.stub.Shutdown(agent_pb2.AgentServiceShutdownRequest(reason=reason), timeout=5)


async def test_shutdown_call_stops_the_guests_announces_stopped_and_exits_0(
    start_agent,
    broker: Broker,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    config = host_config(tmp_path)
    agent: Agent = await asyncio.to_thread(start_agent, config, None, broker.address)
    for vm_id, name in (("vm-1", "web1"), ("vm-2", "web2")):
        await asyncio.to_thread(agent.create, vm_spec(vm_id, name))
        await asyncio.to_thread(agent.operate, vm_id, OP.VM_OPERATION_START)
    await asyncio.to_thread(agent.operate, "vm-2", OP.VM_OPERATION_PAUSE)
    async with subscriber(broker, "leave") as client:
        await client.subscribe(TOPIC, qos=1)
        online = await status_until(client.messages, "online")

        with pytest.raises(grpc.RpcError) as refused:
            await asyncio.to_thread(shutdown, agent, "two\nlines")
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert refused.value.details() == "reason: must be one line of printable characters"
        assert agent.proc.poll() is None

        assert await asyncio.to_thread(shutdown, agent, "maintenance window") == (
            agent_pb2.AgentServiceShutdownResponse()
        )
        left = await status_until(client.messages, "stopped")
        assert left == online | {"state": "stopped", "reason": "maintenance window"}
        assert await asyncio.to_thread(agent.proc.wait, 10) == 0
    log = agent.log()
    assert "asked to stop: maintenance window" in log and "Traceback" not in log
    # The running guest shut down cleanly (its grace period), the paused one was turned off.
    assert "shutting down 2 guests before the host leaves" in log
    assert "VM web1: running => stopped" in log and "VM web2: paused => stopped" in log

    # The guests stay stopped when the host comes back; a crash then is announced by the
    # broker's last will, as ever.
    again: Agent = await asyncio.to_thread(start_agent, config, agent.state_dir, broker.address)
    states = {vm.spec.id: vm.state for vm in (await asyncio.to_thread(again.inventory)).vms}
    assert states == {"vm-1": ST.VM_STATE_STOPPED, "vm-2": ST.VM_STATE_STOPPED}
    async with subscriber(broker, "crash") as client:
        await client.subscribe(TOPIC, qos=1)
        await status_until(client.messages, "online")
        await asyncio.to_thread(again.kill9)
        assert await status_until(client.messages, "offline") == {"state": "offline"}


async def test_a_stale_copy_goes_when_contact_returns_after_isolation(
    start_agent,
    broker: Broker,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    config1 = host_config(tmp_path, name="node1")
    config1["settings"] |= {"isolation_timeout_s": 1.0, "isolation_check_interval_s": 0.05}
    node1: Agent = await asyncio.to_thread(start_agent, config1, None, broker.address)
    node2: Agent = await asyncio.to_thread(start_agent, host_config(tmp_path, name="node2"))
    await asyncio.to_thread(node1.create, vm_spec())
    await asyncio.to_thread(node1.create, vm_spec("vm-2", "web2"))
    for vm_id in ("vm-1", "vm-2"):
        await asyncio.to_thread(node1.operate, vm_id, OP.VM_OPERATION_START)
    async with subscriber(broker, "isolated") as client:
        await client.subscribe(TOPIC, qos=1)
        await status_until(client.messages, "online")

    # From here on no call reaches node1: a call would be contact, and would let go by itself.
    broker.kill()
    await asyncio.to_thread(
        wait_until, lambda: "isolation response power_off (2 VMs)" in node1.log(), 10.0, "the response"
    )
    await asyncio.to_thread(
        wait_until, lambda: node1.log().count("running => stopped") == 2, 5.0, "the VMs powered off"
    )
    # Meanwhile the cluster restarted vm-1 on node2.
    await asyncio.to_thread(node2.take_over, vm_spec(), 2)
    await asyncio.sleep(0.5)
    assert (node1.state_dir / "vms" / "vm-1.json").exists(), "let go before contact returned"

    broker.start()
    await asyncio.to_thread(
        wait_until,
        lambda: not (node1.state_dir / "vms" / "vm-1.json").exists(),
        15.0,
        "node1 to let its stale copy go",
    )
    log = node1.log()
    assert log.index("the isolation episode is over") < log.index("VM web1: the copy here (stopped")
    assert (node1.state_dir / "vms" / "vm-2.json").exists(), "the copy holding its lease stays"
    assert [vm.spec.id for vm in (await asyncio.to_thread(node1.inventory)).vms] == ["vm-2"]
    assert (tmp_path / "san" / "csv" / "Volume1" / "vm-1" / "disk0.vhd").exists()
    assert "Traceback" not in log

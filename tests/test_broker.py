"""The embedded broker process: it serves MQTT, and a bad address is one line, exit 1."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time

import aiomqtt
import pytest

from havm.ports import free_port

BROKER = [sys.executable, "-m", "havm.broker", "--listen"]


async def test_it_serves_retained_messages() -> None:
    port = free_port()
    with subprocess.Popen([*BROKER, f"127.0.0.1:{port}"], stderr=subprocess.PIPE) as proc:
        try:
            deadline = time.monotonic() + 15
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                        break
                except OSError:
                    assert time.monotonic() < deadline, "broker did not listen"
                    await asyncio.sleep(0.05)
            async with aiomqtt.Client("127.0.0.1", port, identifier="writer") as writer:
                await writer.publish("havm/test", b"kept", qos=1, retain=True)
            async with aiomqtt.Client("127.0.0.1", port, identifier="reader") as reader:
                await reader.subscribe("havm/test", qos=1)
                message = await asyncio.wait_for(anext(aiter(reader.messages)), 5)
                assert message.payload == b"kept"
        finally:
            proc.terminate()
            assert proc.wait(timeout=10) == 0
        assert proc.stderr is not None and b"Traceback" not in proc.stderr.read()


@pytest.mark.parametrize("address", ["taken", "256.1.1.1:1883", "nonsense"])
def test_a_bad_address_is_one_line(address: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        if address == "taken":
            address = f"127.0.0.1:{taken.getsockname()[1]}"
        result = subprocess.run([*BROKER, address], capture_output=True, text=True, timeout=20)
    assert result.returncode in (1, 2)
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("havm-broker: ")

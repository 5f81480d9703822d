"""Fixtures that run real node agent processes on loopback; each is killed afterwards."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from agent_testkit import Agent, agent_command, config_file_text, host_config, open_channel

from havm.ports import free_port

StartAgent = Callable[..., Agent]


@pytest.fixture
def start_agent(tmp_path: Path) -> Iterator[StartAgent]:
    """Start agents; every one still running at the end of the test is killed."""
    started: list[Agent] = []

    def start(
        config: dict[str, Any] | None = None,
        state_dir: Path | None = None,
        broker: str | None = None,
        port: int | None = None,
    ) -> Agent:
        config = config or host_config(tmp_path)
        name = config["name"]
        config_path = tmp_path / f"{name}.json"
        config_path.write_text(config_file_text(config))
        state_dir = state_dir or tmp_path / "hosts" / name
        address = f"127.0.0.1:{port or free_port()}"
        log_path = tmp_path / f"{name}-{len(started)}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                agent_command(config_path, state_dir, address, broker),
                stdout=subprocess.DEVNULL,
                stderr=log,
                stdin=subprocess.DEVNULL,
                env=os.environ | {"PYTHONUNBUFFERED": "1"},
            )
        agent = Agent(proc, address, state_dir, config_path, log_path, open_channel(address))
        started.append(agent)
        agent.wait_serving()
        return agent

    yield start
    for agent in started:
        agent.close()


@pytest.fixture
def agent(start_agent: StartAgent) -> Agent:
    return start_agent()

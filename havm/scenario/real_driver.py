"""The real-process driver of a scenario (`havm scenario run --real`).

`havm up` starts the cluster of the folder's topology in a state directory of its own;
every command line runs as `havm --state-dir DIR ...` (faults included, so they act on
the real processes); `advance` sleeps; the log is the manager's event stream with times
counted from the first step. Real timing varies from run to run, so the log is shown
against `expected.log` for information only; the expectations and invariants decide.
The agents are asked for their VMs only at the end, since a management call would count
as contact and disturb a host's isolation timer.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import grpc

from havm.cli.context import client_identity, read_context
from havm.contract.identity import MANAGER_NAME, aio_channel
from havm.scenario.cli_bridge import CommandResult
from havm.scenario.runner import Copy, ScenarioResult, run_steps
from havm.scenario.steps import ScenarioFolder
from havm.v1 import agent_pb2, agent_pb2_grpc, common_pb2, manager_pb2

# One heartbeat window after `havm up`: the manager judges hosts only once it heard them.
SETTLE_S = 6.0
# A command that takes longer is stuck (a migration of a large VM takes seconds).
COMMAND_TIMEOUT_S = 300.0


class RealDriver:
    def __init__(self, state_dir: Path, manager: str, agents: dict[str, str]) -> None:
        self.state_dir = state_dir
        self._identity = client_identity(None, state_dir)
        self._channel = aio_channel(manager, self._identity, MANAGER_NAME)
        self._agents = agents
        self.start = time.monotonic()
        self._start_wall = time.time()

    def now(self) -> float:
        return time.monotonic() - self.start

    def manager_channel(self) -> grpc.aio.Channel:
        return self._channel

    async def command(self, argv: tuple[str, ...], fault: bool) -> tuple[int, str, str]:
        result = await asyncio.to_thread(havm, ["--state-dir", str(self.state_dir), *argv])
        return result.exit_code, result.stdout, result.stderr

    async def advance(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def event_seconds(self, event: manager_pb2.Event) -> float:
        return max(0.0, event.time.seconds + event.time.nanos / 1e9 - self._start_wall)

    def disks_root(self) -> Path:
        return self.state_dir

    async def copies(self, final: bool) -> list[Copy] | None:
        if not final:
            return None
        copies = []
        for host, address in sorted(self._agents.items()):
            async with aio_channel(address, self._identity, host) as channel:
                stub = agent_pb2_grpc.AgentServiceStub(channel)
                try:
                    reply = await stub.GetInventory(agent_pb2.AgentServiceGetInventoryRequest(), timeout=5)
                except grpc.aio.AioRpcError:
                    continue  # down, frozen or cut off: it runs nothing anyone can reach
            for vm in reply.vms:
                running = vm.state == common_pb2.VM_STATE_RUNNING
                copies.append(Copy(host, vm.spec.id, vm.spec.name, running, vm.lease_generation))
        return copies

    async def close(self) -> None:
        await self._channel.close()


def havm(argv: list[str]) -> CommandResult:
    """`havm ARGV` as its own process, as a user types it: the processes that `havm up` and
    `havm host start` leave running are theirs, not this program's children."""
    environment = dict(os.environ, COLUMNS="200")
    completed = subprocess.run(
        [sys.executable, "-m", "havm.cli.main", *argv],
        env=environment,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
    )
    return CommandResult(completed.returncode, completed.stdout, completed.stderr)


def run_real(folder: ScenarioFolder, workdir: Path, result: ScenarioResult) -> None:
    state_dir = workdir / "cluster"
    up = ["--state-dir", str(state_dir), "up", "--detach"]
    if folder.topology is not None:
        up += ["--topology", str(folder.topology)]
    started = havm(up)
    try:
        if started.exit_code != 0:
            result.error = f"havm up failed: {started.stderr.strip() or started.stdout.strip()}"
            return
        context = read_context(state_dir)
        assert context is not None, "havm up wrote no context"
        manager = context.components["manager"].address
        agents = {
            name.removeprefix("agent:"): c.address
            for name, c in context.components.items()
            if name.startswith("agent:")
        }
        asyncio.run(_main(state_dir, manager, agents, folder, result))
    finally:
        havm(["--state-dir", str(state_dir), "down"])


async def _main(
    state_dir: Path, manager: str, agents: dict[str, str], folder: ScenarioFolder, result: ScenarioResult
) -> None:
    await asyncio.sleep(SETTLE_S)
    driver = RealDriver(state_dir, manager, agents)
    try:
        await run_steps(driver, folder, result)
    finally:
        result.virtual_seconds = driver.now()
        await driver.close()

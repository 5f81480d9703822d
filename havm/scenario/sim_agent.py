"""Real agents to test a manager against: the agent's own app, in process.

A manager test needs agents that behave as agents do (leases on shared storage, power
states, memory accounting, fencing of stale copies, the wire's status codes), or it
tests the manager against assumptions. A hand-written fake drifts from the agent; the
agent's app does not. Two ways to run it, by what the test drives:

- `SimAgents`: every host of a topology on virtual time, as a scenario runs them
  (`SimCluster` without its manager). The manager's app under test runs on the same
  loop and reaches them through `client()`; `run_on_virtual_time` runs a test's
  coroutine there. Faults are the scenario's: `crash`, `freeze`/`thaw`, `isolate`/`heal`,
  `start_host`.
- `LoopbackAgent`: one agent app behind a real `grpc.aio` server on a free loopback
  port, in the running (real-time) loop, for a manager in a child process. It has no
  broker session; `stop()`/`start()` plays a host that goes away and comes back on the
  same address and files.

Misbehaviour is injected at the agent's seams, not by a fake: `vm_host(name)` is the
running `VmHost`; wrap one of its methods (`intercept`) to make a call fail, slow it
down or count it. What the agent holds is read through the same AgentService the
manager uses (`client()`), or through the `VmHost` itself.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from havm.contract.host_config import agent_config, agent_config_json
from havm.contract.topology import Topology
from havm.ports import free_port
from havm.scenario.sim_cluster import SimCluster
from havm.scenario.virtual_loop import VirtualTimeLoop
from manager.adapters.agent_client import AgentClient
from manager.core.settings import Settings
from node_agent.adapters.config_file import host_config_from_json
from node_agent.adapters.grpc_server import AgentServer
from node_agent.app.host import VmHost
from node_agent.app.runner import AgentOptions, AgentServerPort, AgentTransports, run_agent

P = ParamSpec("P")
T = TypeVar("T")


class SimAgents:
    """The real agent of every host of `topology`, on the virtual-time loop `loop`.

    Addresses are the scenario's (`node1.sim:50051`); `topology` (the attribute) carries
    them, so a manager loads it as is."""

    def __init__(self, loop: VirtualTimeLoop, topology: Topology, workdir: Path) -> None:
        self.cluster = SimCluster(loop, topology, workdir)
        self.loop = loop
        self.topology = self.cluster.topology

    async def start(self) -> None:
        """Boot every agent; they serve when this returns."""
        await self.cluster.start(with_manager=False)

    def client(self, settings: Settings | None = None) -> AgentClient:
        """The manager's own AgentService client, on the in-process network."""
        return AgentClient(settings or Settings(), open_channel=self.cluster.network.channel)

    def address(self, host: str) -> str:
        return self.cluster.host(host).address

    def vm_host(self, host: str) -> VmHost:
        """The agent app of `host`'s current boot (it must be running)."""
        vm_host = self.cluster.host(host).vm_host
        if vm_host is None:
            raise LookupError(f"the agent of host {host} is not running")
        return vm_host

    # -- faults (the scenario's, see sim_cluster) --------------------------------

    def crash(self, host: str) -> None:
        """The host dies: its calls fail UNAVAILABLE at once, its VMs stop with it."""
        self.cluster.crash(host)

    def start_host(self, host: str) -> None:
        """Boot a new agent on the host's files (after a crash or a power-off)."""
        self.cluster.start_host(host)

    def freeze(self, host: str) -> None:
        """The host stops where it is: calls to it hang until their deadline."""
        self.cluster.freeze(host)

    def thaw(self, host: str) -> None:
        self.cluster.thaw(host)

    def isolate(self, host: str, path: str = "management") -> None:
        """Cut `heartbeat`, `management`, `migration` or `all` paths of the host."""
        self.cluster.isolate(host, path)

    def heal(self, host: str) -> None:
        self.cluster.heal(host)

    async def stop(self) -> None:
        await self.cluster.stop()


def run_on_virtual_time(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run `main()` on a fresh virtual-time loop and close it; what the agents and the
    machines left is dropped, but a task the caller started and left running fails the
    run (as the suite's guard fails an asyncio test that leaves tasks behind)."""
    loop = VirtualTimeLoop()

    async def guarded() -> T:
        result = await main()
        for _ in range(3):  # let cancelled tasks finish their last step
            await asyncio.sleep(0)
        current = asyncio.current_task()
        left = [
            t
            for t in asyncio.all_tasks()
            if t is not current and not t.done() and not getattr(t, "machine", "")
        ]
        for task in left:
            task.cancel()
        if left:
            names = ", ".join(sorted(t.get_coro().__qualname__ for t in left))  # type: ignore[union-attr]
            raise AssertionError(f"the test left asyncio tasks running: {names}")
        return result

    try:
        return loop.run_until_complete(guarded())
    finally:
        loop.discard_all()
        loop.close()


def on_virtual_time(test: Callable[P, Awaitable[T]]) -> Callable[P, T]:
    """Decorate an `async def` test to run on a virtual-time loop of its own (pytest
    fixtures are passed as usual; the test itself is then a plain function)."""

    @functools.wraps(test)
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        async def main() -> T:
            return await test(*args, **kwargs)

        return run_on_virtual_time(main)

    return run


def intercept(
    vm_host: VmHost, method: str, wrapper: Callable[[Callable[..., Any]], Callable[..., Any]]
) -> Callable[[], None]:
    """Replace `vm_host.<method>` with `wrapper(original)`; return what undoes it."""
    original = getattr(vm_host, method)
    setattr(vm_host, method, wrapper(original))

    def undo() -> None:
        setattr(vm_host, method, original)

    return undo


class LoopbackAgent:
    """One host's real agent app served by a real gRPC server on 127.0.0.1.

    `config` is the agent's host configuration file as JSON data (`havm.contract.host_config`);
    the agent keeps its files in `state_dir`, the SAN is the config's `san_root`."""

    def __init__(self, config: dict[str, Any], state_dir: Path) -> None:
        self.name = str(config["name"])
        self.config = config
        self.state_dir = state_dir
        self.port = free_port()
        self.vm_host: VmHost | None = None
        self._leave: Callable[[str], None] | None = None
        self._task: asyncio.Task[int] | None = None

    @classmethod
    def for_host(cls, topology: Topology, host: str, san: Path, state_dir: Path) -> LoopbackAgent:
        return cls(json.loads(agent_config_json(agent_config(topology, topology.host(host), san))), state_dir)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Boot the agent (again, on the same port and files); return once it serves."""
        assert not self.running, f"the agent of {self.name} runs already"
        self.state_dir.mkdir(parents=True, exist_ok=True)
        serving: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def server(vm_host: VmHost, listen: str, leave: Callable[[str], None]) -> AgentServerPort:
            self.vm_host, self._leave = vm_host, leave
            return _Announcing(AgentServer(vm_host, listen, leave=leave), serving)

        transports = AgentTransports(server=server, broker_session=_no_broker, handle_signals=False)
        options = AgentOptions(
            config=host_config_from_json(json.dumps(self.config)),
            state_dir=self.state_dir,
            listen=self.address,
        )
        self._task = asyncio.create_task(run_agent(options, transports), name=f"agent {self.name}")
        waiting: set[asyncio.Future[Any]] = {self._task, serving}
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if not serving.done():
            serving.cancel()
            raise RuntimeError(f"the agent of {self.name} did not start (exit {self._task.result()})")

    async def stop(self) -> None:
        """Stop the agent as on SIGTERM: the server first, then its guests' tasks."""
        if self._task is None:
            return
        if not self._task.done() and self._leave is not None:
            # As on SIGTERM: the guests are not shut down first (their files stay as they are).
            stops: Any = self._leave.__self__  # type: ignore[attr-defined]  # StopRequests
            stops.on_signal("SIGTERM")
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout=10)
        except TimeoutError:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._task, self.vm_host, self._leave = None, None, None


class _Announcing:
    """The agent's server port, telling the test when it serves."""

    def __init__(self, server: AgentServerPort, serving: asyncio.Future[None]) -> None:
        self._server, self._serving = server, serving

    @property
    def address(self) -> str:
        return self._server.address

    async def start(self) -> None:
        await self._server.start()
        if not self._serving.done():
            self._serving.set_result(None)

    async def stop(self, grace_s: float) -> None:
        await self._server.stop(grace_s)


def _no_broker(params: Any) -> Any:
    raise AssertionError("a loopback agent has no broker session")

"""A whole cluster in one process on virtual time: the real manager app, the real agents.

Each host is the agent's own app (`node_agent.app.runner.run_agent`) with in-process
transports: its AgentService is reached through `inprocess_grpc`, its broker session is
the scenario broker's, its files live in a directory of its own and the SAN is shared,
as on a real local cluster. The manager is its own app with an in-memory store, reached
the same way. Each is a machine of the virtual-time loop, so a fault acts on it alone:

- `crash HOST`: the machine dies; its connections close (the will goes out at once);
- `power-off HOST`: it freezes for good; only missed beats and a failed probe tell;
  `host start HOST` boots a new agent on its files (the frozen one dies first);
- `freeze` / `thaw`: it stops and goes on where it was;
- `isolate HOST --from heartbeat|management|all` / `heal HOST`: that path drops
  everything, both ways, without closing anything;
- `crash-broker` / `restart broker`, `crash-manager` / `restart manager` (the store
  survives, as the manager's database does).
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from havm.contract.host_config import agent_config, agent_config_json
from havm.contract.topology import Topology
from havm.scenario.inprocess_grpc import InProcessNetwork
from havm.scenario.sim_broker import SimBroker
from havm.scenario.virtual_loop import VirtualTimeLoop
from havm.v1 import agent_pb2, manager_pb2
from manager.adapters.agent_client import AgentClient
from manager.adapters.grpc_server import ManagerServicer
from manager.adapters.memory_store import MemoryStore
from manager.adapters.mqtt import BadPayload, parse_message
from manager.app.crash_points import POINTS as MANAGER_CRASH_POINTS
from manager.app.crash_points import CrashPoints as ManagerCrashPoints
from manager.app.ha import HaService
from manager.app.manager import ManagerApp
from manager.core.levels import VmmVersion
from manager.core.placement import PlacementGoal, RatingWeights
from manager.core.settings import Settings
from node_agent.adapters.config_file import host_config_from_json
from node_agent.adapters.grpc_agent import AgentServicer
from node_agent.adapters.migration_network import CUT_FILE as MIGRATION_CUT_FILE
from node_agent.app.crash_points import ARM_FILE as CRASH_ARM_FILE
from node_agent.app.crash_points import POINTS as AGENT_CRASH_POINTS
from node_agent.app.host import VmHost
from node_agent.app.runner import AgentOptions, AgentTransports, run_agent

log = logging.getLogger(__name__)

MANAGER = "manager"
MANAGER_ADDRESS = "manager.sim:50051"
AGENT_SERVICE = agent_pb2.DESCRIPTOR.services_by_name["AgentService"].full_name
HOST_ADMIN_SERVICE = agent_pb2.DESCRIPTOR.services_by_name["HostAdminService"].full_name
MANAGER_SERVICE = manager_pb2.DESCRIPTOR.services_by_name["ManagerService"].full_name
# Virtual time 0 is this moment on the wall clock: logs and records show plausible dates.
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


HEARTBEAT, MANAGEMENT, MIGRATION = "heartbeat", "management", "migration"
PATHS = (HEARTBEAT, MANAGEMENT, MIGRATION)


@dataclass
class SimHost:
    name: str
    address: str
    state_dir: Path
    config: dict[str, Any]
    # "running", "crashed", "powered_off", "frozen", "exited" (it left on its own)
    power: str = "running"
    cut: set[str] = field(default_factory=set)
    boots: int = 0
    task: asyncio.Task[Any] | None = None
    # The agent's app of the current boot, for the invariant checks.
    vm_host: VmHost | None = None

    @property
    def machine(self) -> str:
        return f"{self.name}#{self.boots}"


class _InProcessServer:
    """The agent's server port, registered on the scenario's network."""

    def __init__(
        self, network: InProcessNetwork, machine: str, host: VmHost, address: str, leave: Any
    ) -> None:
        self._network, self._machine, self._address = network, machine, address
        self._servicer = AgentServicer(host, leave)

    @property
    def address(self) -> str:
        return self._address

    async def start(self) -> None:
        # One servicer answers both services, as the agent's real server does.
        services = {AGENT_SERVICE: self._servicer, HOST_ADMIN_SERVICE: self._servicer}
        self._network.listen(self._address, self._machine, services)

    async def stop(self, grace_s: float) -> None:
        self._network.close(self._address)


class SimCluster:
    def __init__(self, loop: VirtualTimeLoop, topology: Topology, workdir: Path) -> None:
        self.loop = loop
        self.workdir = workdir
        addresses = {h.name: f"{h.name}.sim:50051" for h in topology.hosts}
        self.topology = topology.with_addresses(addresses)
        self.network = InProcessNetwork(loop, self._grpc_path_open)
        self.broker = SimBroker(loop, self._heartbeat_path_open, self._manager_connection)
        san = workdir / "san"
        san.mkdir(parents=True, exist_ok=True)
        self.hosts: dict[str, SimHost] = {}
        for spec in self.topology.hosts:
            self.hosts[spec.name] = SimHost(
                spec.name,
                addresses[spec.name],
                workdir / "hosts" / spec.name,
                json.loads(agent_config_json(agent_config(self.topology, spec, san))),
            )
        self.store = MemoryStore()
        self.manager_dir = workdir / "manager"
        self.manager_dir.mkdir(parents=True, exist_ok=True)
        self.app: ManagerApp | None = None
        self.ha: HaService | None = None
        self._manager_machine: str | None = None
        self.manager_boots = 0

    # -- clocks -------------------------------------------------------------------

    def wall_clock(self) -> float:
        return EPOCH.timestamp() + self.loop.time()

    def utc_now(self) -> datetime:
        return EPOCH + timedelta(seconds=self.loop.time())

    # -- paths --------------------------------------------------------------------

    def _machine_host(self, machine: str) -> SimHost | None:
        name = machine.split("#", 1)[0]
        return self.hosts.get(name)

    def _grpc_path_open(self, caller: str, callee: str) -> bool:
        caller_host, callee_host = self._machine_host(caller), self._machine_host(callee)
        if caller_host is not None and callee_host is not None:
            # Agent to agent is the migration network: a cut there is the agents' own
            # (the cut file in the state directory, as `havm fault isolate` writes it).
            return True
        for host in (caller_host, callee_host):
            if host is not None and MANAGEMENT in host.cut:
                return False
        return True

    def _heartbeat_path_open(self, host: str) -> bool:
        sim = self.hosts.get(host)
        return sim is None or HEARTBEAT not in sim.cut

    def _manager_connection(self, connected: bool) -> None:
        if self.ha is not None:
            self.loop.call_soon(self.ha.on_connection, connected, context=self._manager_context)

    # -- starting -----------------------------------------------------------------

    async def start(self, with_manager: bool = True) -> None:
        for host in self.hosts.values():
            self._boot(host)
        await asyncio.sleep(0.5)  # the agents serve before the manager's first refresh
        if with_manager:
            self._start_manager()

    def _boot(self, host: SimHost) -> None:
        host.boots += 1
        host.power = "running"
        host.state_dir.mkdir(parents=True, exist_ok=True)
        config = host_config_from_json(json.dumps(host.config))
        machine = host.machine

        def server(vm_host: VmHost, listen: str, leave: Any) -> _InProcessServer:
            host.vm_host = vm_host
            return _InProcessServer(self.network, machine, vm_host, listen, leave)

        transports = AgentTransports(
            server=server,
            broker_session=lambda params: self.broker.session(host.name, params),
            handle_signals=False,
            clock=self.wall_clock,
            monotonic=self.loop.time,
            peer_channel=lambda _host, address: self.network.channel(address),
            die=lambda: self._die_at_crash_point(host),
        )
        options = AgentOptions(
            config=config, state_dir=host.state_dir, listen=host.address, broker=("sim", 1883)
        )
        host.task = self.loop.spawn(machine, run_agent(options, transports))
        boot = host.boots

        def exited(_: asyncio.Task[Any]) -> None:
            # The agent left on its own (a Shutdown call): its process is gone.
            if host.boots == boot and host.power == "running":
                host.power = "exited"
                host.vm_host = None

        host.task.add_done_callback(exited)

    def _start_manager(self) -> None:
        self.manager_boots += 1
        machine = f"{MANAGER}#{self.manager_boots}"
        self._manager_machine = machine
        self.loop.spawn(machine, self._run_manager(machine))

    async def _run_manager(self, machine: str) -> None:
        self._manager_context = contextvars.copy_context()
        placement = self.topology.placement
        settings = Settings(
            placement_goal=PlacementGoal(placement.goal),
            rating_weights=RatingWeights(memory=placement.memory_weight, cpu=placement.cpu_weight),
            vmm_version=VmmVersion(self.topology.vmm_version),
        )
        agents = AgentClient(settings, open_channel=self.network.channel)
        crash_points = ManagerCrashPoints(self.manager_dir, die=self._manager_dies)
        app = ManagerApp(
            self.store,
            agents,
            settings,
            monotonic=self.loop.time,
            clock=self.utc_now,
            crash_points=crash_points,
        )
        app.load(self.topology)
        ha = app.enable_ha()
        self.app, self.ha = app, ha

        def deliver(topic: str, payload: bytes) -> None:
            try:
                message = parse_message(topic, payload)
            except BadPayload as error:
                log.warning("ignored: %s", error)
                return
            if message is not None:
                ha.on_message(message)

        self.broker.subscribe(deliver)
        self.network.listen(MANAGER_ADDRESS, machine, {MANAGER_SERVICE: ManagerServicer(app)})
        app.start_background()
        ha.on_connection(self.broker.up)
        await asyncio.Event().wait()

    # -- faults -------------------------------------------------------------------

    def host(self, name: str) -> SimHost:
        try:
            return self.hosts[name]
        except KeyError:
            known = ", ".join(sorted(self.hosts))
            raise ScenarioError(f"no host named {name} in the local cluster (hosts: {known})") from None

    def crash(self, name: str) -> None:
        host = self.host(name)
        self._running(host, "crash")
        self._kill(host)
        host.power = "crashed"

    def _kill(self, host: SimHost) -> None:
        self.loop.kill(host.machine)
        host.vm_host = None
        self.network.close(host.address)
        self.network.machine_died(host.machine)
        self.broker.client_died(host.name)

    def _die_at_crash_point(self, host: SimHost) -> None:
        self._kill(host)
        host.power = "crashed"
        raise MachineKilled(host.machine)

    def arm(self, name: str, point: str) -> None:
        """`fault crash-at HOST POINT`: the agent dies when it reaches that step."""
        host = self.host(name)
        if point not in AGENT_CRASH_POINTS:
            raise ScenarioError(f"{point!r} is not a crash point; one of {', '.join(AGENT_CRASH_POINTS)}")
        self._running(host, "arm")
        (host.state_dir / CRASH_ARM_FILE).write_text(point + "\n")

    def arm_manager(self, point: str) -> None:
        """`fault crash-manager-at POINT`: the manager dies when it reaches that step."""
        if point not in MANAGER_CRASH_POINTS:
            raise ScenarioError(f"{point!r} is not a crash point; one of {', '.join(MANAGER_CRASH_POINTS)}")
        if self._manager_machine is None:
            raise ScenarioError("the manager is not running")
        (self.manager_dir / CRASH_ARM_FILE).write_text(point + "\n")

    def _manager_dies(self) -> None:
        self.crash_manager()
        raise MachineKilled(MANAGER)

    def power_off(self, name: str) -> None:
        host = self.host(name)
        self._running(host, "power off")
        self.loop.freeze(host.machine)
        host.power = "powered_off"

    def freeze(self, name: str) -> None:
        host = self.host(name)
        self._running(host, "freeze")
        self.loop.freeze(host.machine)
        host.power = "frozen"

    def thaw(self, name: str) -> None:
        host = self.host(name)
        if host.power == "powered_off":
            raise ScenarioError(f"host {name} is powered off: start it with `havm host start {name}`")
        if host.power != "frozen":
            raise ScenarioError(f"host {name} is not frozen")
        host.power = "running"
        self.loop.thaw(host.machine)

    def start_host(self, name: str) -> None:
        host = self.host(name)
        if host.power in ("running", "frozen"):
            raise ScenarioError(f"host {name} is already running")
        if host.power == "powered_off":
            self._kill(host)  # its memory is lost, as at power-off; now its connections close
        self._boot(host)

    def isolate(self, name: str, path: str) -> None:
        host = self.host(name)
        host.cut |= set(PATHS) if path == "all" else {path}
        if MIGRATION in host.cut:
            (host.state_dir / MIGRATION_CUT_FILE).touch()
        self.broker.path_changed(name)

    def heal(self, name: str) -> None:
        host = self.host(name)
        host.cut.clear()
        (host.state_dir / MIGRATION_CUT_FILE).unlink(missing_ok=True)
        self.broker.path_changed(name)

    def crash_broker(self) -> None:
        if not self.broker.up:
            raise ScenarioError("the broker is not running")
        self.broker.crash()

    def restart_broker(self) -> None:
        if self.broker.up:
            raise ScenarioError("the broker is running")
        self.broker.restart()

    def crash_manager(self) -> None:
        # The machine, not the app: a manager restarted a moment ago has not built its app yet.
        if self._manager_machine is None:
            raise ScenarioError("the manager is not running")
        self.loop.kill(self._manager_machine)
        self._manager_machine = None
        self.network.close(MANAGER_ADDRESS)
        self.broker.unsubscribe_all()
        self.app, self.ha = None, None

    def restart_manager(self) -> None:
        if self._manager_machine is not None:
            raise ScenarioError("the manager is running")
        self._start_manager()

    def _running(self, host: SimHost, what: str) -> None:
        if host.power in ("crashed", "exited"):
            raise ScenarioError(f"host {host.name} is not running")
        if host.power != "running":
            raise ScenarioError(f"cannot {what} host {host.name}: it is {host.power.replace('_', ' ')}")

    # -- what runs where (for the invariants) ------------------------------------

    async def stop(self) -> None:
        for host in self.hosts.values():
            if host.power != "crashed":
                self.loop.kill(host.machine)
        if self._manager_machine is not None:
            self.loop.kill(self._manager_machine)


class MachineKilled(BaseException):
    """Ends the step of a machine that died at an armed crash point: nothing after the
    point runs, as nothing runs in a process after SIGKILL (not an Exception, so that no
    handler of the app mistakes it for a failure it can handle)."""


class ScenarioError(Exception):
    """A scenario step that cannot be carried out; the sentence says why."""

"""The virtual-time driver of a scenario: a SimCluster on a VirtualTimeLoop."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from havm.cli.local_cluster import load_topology
from havm.cli.processes import LocalClusterError
from havm.scenario.cli_bridge import EmbeddedManager, run_cli
from havm.scenario.inprocess_grpc import InProcessChannel
from havm.scenario.runner import Copy, ScenarioResult, run_steps
from havm.scenario.sim_cluster import EPOCH, MANAGER_ADDRESS, ScenarioError, SimCluster
from havm.scenario.steps import ScenarioFolder
from havm.scenario.virtual_loop import Deadlock, VirtualTimeLoop
from havm.v1 import manager_pb2
from node_agent.core.views import PowerState


class SimDriver:
    def __init__(self, cluster: SimCluster) -> None:
        self.cluster = cluster
        self.loop = cluster.loop
        self._embedded = EmbeddedManager(self.loop, cluster.network, MANAGER_ADDRESS)
        # The scenario's time 0: its first step, once the cluster is up.
        self.start = self.loop.time()

    def now(self) -> float:
        return self.loop.time() - self.start

    def disks_root(self) -> Path:
        return self.cluster.workdir

    def manager_channel(self) -> InProcessChannel:
        return self.cluster.network.channel(MANAGER_ADDRESS)

    async def command(self, argv: tuple[str, ...], fault: bool) -> tuple[int, str, str]:
        if fault:
            try:
                message = self._fault(argv)
            except ScenarioError as error:
                return 1, "", f"havm: error: {error}"
            return 0, message, ""
        result = await self.loop.run_outside(lambda: run_cli(list(argv), obj=self._embedded))
        return result.exit_code, result.stdout, result.stderr

    def _fault(self, argv: tuple[str, ...]) -> str:
        cluster = self.cluster
        words = list(argv)
        if words[:2] == ["host", "start"] and len(words) == 3:
            cluster.start_host(words[2])
            return f"host {words[2]} started"
        if words[:1] == ["restart"] and len(words) == 2 and words[1] in ("broker", "manager"):
            (cluster.restart_broker if words[1] == "broker" else cluster.restart_manager)()
            return f"{words[1]} restarted"
        if words[:1] != ["fault"] or len(words) < 2:
            raise ScenarioError(f"`{' '.join(argv)}` is not a fault a scenario knows")
        action, rest = words[1], words[2:]
        if action in ("crash-broker", "crash-manager") and not rest:
            (cluster.crash_broker if action == "crash-broker" else cluster.crash_manager)()
            return f"{action.removeprefix('crash-')} crashed"
        # Each says what `havm fault ...` says on a real cluster.
        single = {
            "crash": (cluster.crash, "crashed"),
            "power-off": (cluster.power_off, "powered off"),
            "freeze": (cluster.freeze, "frozen"),
            "thaw": (cluster.thaw, "thawed"),
            "heal": (cluster.heal, "reconnected"),
        }
        if action in single and len(rest) == 1:
            act, done = single[action]
            act(rest[0])
            return f"host {rest[0]} {done}"
        if action == "crash-at" and len(rest) == 2:
            cluster.arm(rest[0], rest[1])
            return f"host {rest[0]} dies when it reaches {rest[1]}"
        if action == "crash-manager-at" and len(rest) == 1:
            cluster.arm_manager(rest[0])
            return f"the manager dies when it reaches {rest[0]}"
        if action == "isolate" and len(rest) == 3 and rest[1] == "--from":
            if rest[2] not in ("heartbeat", "management", "migration", "all"):
                raise ScenarioError(f"--from: {rest[2]!r} is not heartbeat, management, migration or all")
            cluster.isolate(rest[0], rest[2])
            paths = ["heartbeat", "management", "migration"] if rest[2] == "all" else [rest[2]]
            named = paths[0] if len(paths) == 1 else f"{', '.join(paths[:-1])} and {paths[-1]}"
            return f"host {rest[0]} cut from the {named} network"
        raise ScenarioError(f"`{' '.join(argv)}` is not a fault a scenario runs on virtual time")

    async def advance(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def event_seconds(self, event: manager_pb2.Event) -> float:
        since_epoch = (event.time.seconds - int(EPOCH.timestamp())) + event.time.nanos / 1e9
        return max(0.0, round(since_epoch - self.start, 6))

    async def copies(self, final: bool) -> list[Copy] | None:
        copies = []
        for name, host in sorted(self.cluster.hosts.items()):
            if host.vm_host is None:
                continue
            for vm in host.vm_host.list_vms():
                copies.append(
                    Copy(name, vm.spec.id, vm.spec.name, vm.state is PowerState.RUNNING, vm.lease_generation)
                )
        return copies


def run_sim(folder: ScenarioFolder, workdir: Path, result: ScenarioResult) -> None:
    try:
        topology, _ = load_topology(folder.topology)
    except LocalClusterError as error:
        result.error = str(error)
        return
    loop = VirtualTimeLoop()
    # The agents' and the manager's own logs would drown the result; warnings still show.
    quiet = {
        "manager": logging.ERROR,
        "node_agent": logging.ERROR,
        # Dying at an armed crash point is what the scenario asked for.
        "manager.app.crash_points": logging.CRITICAL + 1,
        "node_agent.app.crash_points": logging.CRITICAL + 1,
    }
    loggers = [logging.getLogger(name) for name in quiet]
    levels = [logger.level for logger in loggers]
    for logger, level in zip(loggers, quiet.values(), strict=True):
        logger.setLevel(level)
    try:
        loop.run_until_complete(_main(loop, topology, workdir, folder, result))
    except Deadlock as error:
        result.error = str(error)
    finally:
        logging.disable(logging.CRITICAL)
        try:
            loop.discard_all()
            loop.close()
        finally:
            logging.disable(logging.NOTSET)
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)


async def _main(
    loop: VirtualTimeLoop, topology: Any, workdir: Path, folder: ScenarioFolder, result: ScenarioResult
) -> None:
    cluster = SimCluster(loop, topology, workdir)
    await cluster.start()
    # One heartbeat window: the manager judges hosts only once it heard them (as after `havm up`).
    await asyncio.sleep(6.0)
    driver = SimDriver(cluster)
    try:
        await run_steps(driver, folder, result)
    finally:
        result.virtual_seconds = driver.now()
        await cluster.stop()

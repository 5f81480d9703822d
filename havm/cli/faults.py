"""Fault injection on the local cluster: `havm fault ...`, `havm host start`, `havm restart`.

Each fault is what happens to a real cluster, done to the processes `havm up` started:

- `crash HOST`: the agent process is killed (SIGKILL). Its connections close, so the
  broker publishes its last will at once, as when a host's OS crashes.
- `power-off HOST`: the agent is stopped (SIGSTOP) and stays stopped: it answers on no
  path but closes nothing, so only missed heartbeats and a failed probe reveal it, as
  after a power loss. `havm host start HOST` powers it on again: the frozen process is
  killed (its memory is lost, as at power-off) and a fresh agent boots.
- `freeze HOST` / `thaw HOST`: SIGSTOP / SIGCONT, a host that hangs and then resumes
  where it was.
- `isolate HOST --from heartbeat|management|migration|all` / `heal HOST`: cut or
  restore that host's network paths: heartbeat and management in the fault relay, the
  live-migration network in the agent's own transport.
- `crash-manager`, `crash-broker`: SIGKILL; `havm restart manager|broker` starts them
  again (nothing restarts by itself).
- `crash-at HOST POINT`: the agent dies (as at SIGKILL) the next time it reaches that
  step of a live migration, a moment too short to hit from outside.
- `crash-manager-at POINT`: the same for the manager, at a step of a live or quick
  migration that it records.

A cluster in containers (`havm up --runtime compose`, or `havm fault --runtime compose`
for one the compose tool started) takes the same faults, done to its containers: see
havm.cli.container_faults.
"""

from __future__ import annotations

import enum
import json
import os
import signal
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from havm.cli import container_faults
from havm.cli.compose_cluster import DEFAULT_COMPOSE_FILE, DEFAULT_PROJECT, compose_context
from havm.cli.context import (
    COMPOSE,
    FROZEN,
    POWERED_OFF,
    ClusterContext,
    Component,
    ContextError,
    Runtime,
    admin_identity,
    read_context,
    write_context,
)
from havm.cli.local_cluster import (
    state_dir_option,
)
from havm.cli.processes import (
    LocalClusterError,
    UpSettings,
    is_running,
    spawn,
    stop_components,
    wait_healthy,
)
from havm.faultnet import applied_path, read_faults, write_faults


class Network(enum.StrEnum):
    heartbeat = "heartbeat"
    management = "management"
    migration = "migration"
    all = "all"


# Cut in the agent's own transport, not the relay (see node_agent.adapters.migration_network).
MIGRATION_CUT_FILE = "migration-network-cut"


class CrashPoint(enum.StrEnum):
    """Steps of a live migration an agent can be told to die at (the agent's names)."""

    source_pre_copy = "migration-source-pre-copy"
    source_paused = "migration-source-paused"
    source_lease_moved = "migration-source-lease-moved"
    destination_copying = "migration-destination-copying"
    destination_committing = "migration-destination-committing"


class ManagerCrashPoint(enum.StrEnum):
    """Steps of a migration or a create the manager can be told to die at (the manager's names)."""

    pre_copy = "migration-manager-pre-copy"
    blackout = "migration-manager-blackout"
    quick_saved = "migration-manager-quick-saved"
    quick_taken_over = "migration-manager-quick-taken-over"
    create_started = "create-manager-started"
    create_confirmed = "create-manager-confirmed"


# Where an agent or the manager looks for the crash point it is armed with, in its
# state directory.
CRASH_POINT_FILE = "crash-at"


class Restartable(enum.StrEnum):
    manager = "manager"
    broker = "broker"


fault_app = typer.Typer(help="Inject faults into the local cluster.", no_args_is_help=True)
RUNTIME_KEY = "havm.fault.runtime"


@fault_app.callback()
def fault_options(
    ctx: typer.Context,
    runtime: Annotated[
        Runtime | None,
        typer.Option(
            "--runtime",
            case_sensitive=False,
            help="local (processes) or compose (containers); default: what the context file says.",
        ),
    ] = None,
    project: Annotated[
        str, typer.Option("--project", help="The compose project, with --runtime compose.")
    ] = DEFAULT_PROJECT,
) -> None:
    """Inject faults into the cluster: its processes, or its containers."""
    ctx.meta[RUNTIME_KEY] = (runtime, project)


def _console() -> Console:
    return Console(highlight=False, soft_wrap=True)


def _cluster(ctx: typer.Context) -> ClusterContext:
    directory = state_dir_option(ctx).resolve()
    runtime, project = ctx.meta.get(RUNTIME_KEY, (None, DEFAULT_PROJECT))
    cluster = read_context(directory)
    if runtime is Runtime.compose and (
        cluster is None or cluster.runtime != COMPOSE or cluster.project != project
    ):
        return compose_context(directory, DEFAULT_COMPOSE_FILE, project)
    if cluster is None:
        raise ContextError(f"no local cluster in {directory}: start one with `havm up`")
    if runtime is Runtime.local and cluster.runtime == COMPOSE:
        raise ContextError(f"the cluster of {directory} runs in containers: drop --runtime local")
    return cluster


def _in_containers(cluster: ClusterContext) -> bool:
    return cluster.runtime == COMPOSE


def _component(cluster: ClusterContext, name: str, what: str) -> Component:
    component = cluster.components.get(name)
    if component is None:
        known = ", ".join(sorted(n.split(":", 1)[1] for n in cluster.components if n.startswith("agent:")))
        raise ContextError(f"no {what} in the local cluster (hosts: {known})")
    return component


def _agent(cluster: ClusterContext, host: str) -> Component:
    return _component(cluster, f"agent:{host}", f"host named {host}")


def _running(component: Component, label: str) -> None:
    if not is_running(component):
        raise ContextError(f"{label} is not running")


def _signal(component: Component, sig: signal.Signals) -> None:
    try:
        os.kill(component.pid, sig)
    except ProcessLookupError:
        raise ContextError(f"{component.name} (pid {component.pid}) is not running") from None


def _wait_dead(component: Component, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while is_running(component):
        if time.monotonic() > deadline:
            raise ContextError(f"{component.name} (pid {component.pid}) did not die")
        time.sleep(0.02)


def _kill(cluster: ClusterContext, component: Component) -> None:
    _running(component, component.name)
    _signal(component, signal.SIGKILL)
    _wait_dead(component)
    component.fault = ""
    write_context(cluster)


def _start(cluster: ClusterContext, component: Component) -> None:
    """Start a component again with the command line it had, and wait until it is healthy."""
    proc = spawn(component)
    component.fault = ""
    write_context(cluster)
    try:
        wait_healthy([component], {component.name: proc}, UpSettings(), admin_identity(cluster))
    except LocalClusterError as exc:
        raise ContextError(str(exc)) from None


@fault_app.command("crash")
def crash(ctx: typer.Context, host: str) -> None:
    """Kill the host's agent (SIGKILL): a crash the broker notices at once."""
    cluster = _cluster(ctx)
    if _in_containers(cluster):
        container_faults.kill(cluster, _agent(cluster, host), f"host {host}")
    else:
        _kill(cluster, _agent(cluster, host))
    _console().print(f"host {host} crashed")


@fault_app.command("power-off")
def power_off(ctx: typer.Context, host: str) -> None:
    """Stop the host silently, as after a power loss (`havm host start` powers it on)."""
    cluster = _cluster(ctx)
    agent = _agent(cluster, host)
    if _in_containers(cluster):
        container_faults.pause(cluster, agent, f"host {host}", POWERED_OFF)
        _console().print(f"host {host} powered off")
        return
    _running(agent, f"host {host}")
    _signal(agent, signal.SIGSTOP)
    agent.fault = POWERED_OFF
    write_context(cluster)
    _console().print(f"host {host} powered off")


@fault_app.command("freeze")
def freeze(ctx: typer.Context, host: str) -> None:
    """Freeze the host's agent (SIGSTOP); `thaw` resumes it where it was."""
    cluster = _cluster(ctx)
    agent = _agent(cluster, host)
    if _in_containers(cluster):
        container_faults.pause(cluster, agent, f"host {host}", FROZEN)
        _console().print(f"host {host} frozen")
        return
    _running(agent, f"host {host}")
    if agent.fault == POWERED_OFF:
        raise ContextError(f"host {host} is powered off: start it with `havm host start {host}`")
    _signal(agent, signal.SIGSTOP)
    agent.fault = FROZEN
    write_context(cluster)
    _console().print(f"host {host} frozen")


@fault_app.command("thaw")
def thaw(ctx: typer.Context, host: str) -> None:
    """Resume a frozen host (SIGCONT)."""
    cluster = _cluster(ctx)
    agent = _agent(cluster, host)
    if _in_containers(cluster):
        container_faults.thaw(cluster, agent, f"host {host}")
        _console().print(f"host {host} thawed")
        return
    _running(agent, f"host {host}")
    if agent.fault == POWERED_OFF:
        raise ContextError(f"host {host} is powered off: start it with `havm host start {host}`")
    if agent.fault != FROZEN:
        raise ContextError(f"host {host} is not frozen")
    _signal(agent, signal.SIGCONT)
    agent.fault = ""
    write_context(cluster)
    _console().print(f"host {host} thawed")


def _relays(cluster: ClusterContext) -> list[Component]:
    """The fault relays: `havm up`'s, and one per host `havm host add` started."""
    return [c for n, c in sorted(cluster.components.items()) if n == "faultnet" or n.startswith("faultnet:")]


def _option(component: Component, flag: str) -> Path:
    return Path(component.argv[component.argv.index(flag) + 1])


def _set_cut(cluster: ClusterContext, change: dict[str, bool]) -> set[str]:
    """Cut (True) or heal (False) network paths in the fault relays; wait until applied.

    Each relay keeps the cut paths it carries in its own faults file and confirms a
    change in its own applied file; the cluster's cut paths are all of them together."""
    relays = _relays(cluster)
    if not relays:
        raise ContextError("no fault relay in the local cluster")
    for relay in relays:
        _running(relay, f"the fault relay {relay.name}")
    cut: set[str] = set().union(*(read_faults(_option(relay, "--faults"))[0] for relay in relays))
    cut = (cut - {n for n, on in change.items() if not on}) | {n for n, on in change.items() if on}
    waiting = []
    for relay in relays:
        faults = _option(relay, "--faults")
        carried = set(json.loads(_option(relay, "--links").read_text()))
        version = read_faults(faults)[1] + 1
        write_faults(faults, cut & carried, version)
        _signal(relay, signal.SIGHUP)
        waiting.append((faults, version))
    deadline = time.monotonic() + 5.0
    for faults, version in waiting:
        while True:
            try:
                if int(applied_path(faults).read_text().strip() or 0) >= version:
                    break
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise ContextError("the fault relay did not apply the change within 5 s")
            time.sleep(0.02)
    return cut


@fault_app.command("isolate")
def isolate(
    ctx: typer.Context,
    host: str,
    from_: Annotated[
        Network, typer.Option("--from", help="Which network to cut the host from.", case_sensitive=False)
    ] = Network.all,
) -> None:
    """Cut the host's heartbeat, management or live-migration network (or all three),
    like a pulled cable."""
    cluster = _cluster(ctx)
    agent = _agent(cluster, host)
    paths = ["heartbeat", "management", "migration"] if from_ is Network.all else [from_.value]
    if _in_containers(cluster):
        container_faults.isolate(cluster, agent, paths)
        _console().print(f"host {host} cut from the {_and(paths)} network")
        return
    relayed = [p for p in paths if p != "migration"]
    if "migration" in paths:
        (_state_dir(agent, f"the agent of host {host}") / MIGRATION_CUT_FILE).touch()
    if relayed:
        _set_cut(cluster, {f"{p}:{host}": True for p in relayed})
    _console().print(f"host {host} cut from the {_and(paths)} network")


@fault_app.command("heal")
def heal(ctx: typer.Context, host: str) -> None:
    """Restore every network path of the host."""
    cluster = _cluster(ctx)
    agent = _agent(cluster, host)
    if _in_containers(cluster):
        container_faults.heal(cluster, agent)
        _console().print(f"host {host} reconnected")
        return
    (_state_dir(agent, f"the agent of host {host}") / MIGRATION_CUT_FILE).unlink(missing_ok=True)
    _set_cut(cluster, {f"heartbeat:{host}": False, f"management:{host}": False})
    _console().print(f"host {host} reconnected")


@fault_app.command("crash-at")
def crash_at(
    ctx: typer.Context,
    host: str,
    point: Annotated[CrashPoint, typer.Argument(help="The migration step the agent dies at.")],
) -> None:
    """Arm the host's agent to die (as at SIGKILL) when it reaches a step of a live migration.

    source: pre-copy (after the first pass), paused (guest paused, lease not moved yet),
    lease-moved (the lease names the destination, the commit not sent); destination:
    copying (pages arriving), committing (the commit arrived, the VM not resumed yet).
    """
    cluster = _cluster(ctx)
    agent = _agent(cluster, host)
    if _in_containers(cluster):
        container_faults.arm(cluster, agent, "agent", point.value)
    else:
        _running(agent, f"host {host}")
        _arm(agent, f"the agent of host {host}", point.value)
    _console().print(f"host {host} dies when it reaches {point.value}")


@fault_app.command("crash-manager-at")
def crash_manager_at(
    ctx: typer.Context,
    point: Annotated[ManagerCrashPoint, typer.Argument(help="The migration step the manager dies at.")],
) -> None:
    """Arm the manager to die (as at SIGKILL) when it reaches a step of a migration or a create.

    pre-copy (the source reported memory going over), blackout (the source reported that
    it pauses the guest), quick-saved (a quick migration saved the VM on the source, no
    take-over asked yet), quick-taken-over (the destination holds the VM's lease, the VM
    is not restored there yet), create-started (a create's record and job are stored, no
    host asked yet), create-confirmed (the host created the VM, the manager has not
    recorded it). `havm restart manager` starts it again.
    """
    cluster = _cluster(ctx)
    manager = _component(cluster, "manager", "manager")
    if _in_containers(cluster):
        container_faults.arm(cluster, manager, "manager", point.value)
    else:
        _running(manager, "the manager")
        _arm(manager, "the manager", point.value)
    _console().print(f"the manager dies when it reaches {point.value}")


def _arm(component: Component, label: str, point: str) -> None:
    (_state_dir(component, label) / CRASH_POINT_FILE).write_text(point + "\n")


def _state_dir(component: Component, label: str) -> Path:
    if "--state-dir" not in component.argv:
        raise ContextError(f"{label} was started without --state-dir")
    return Path(component.argv[component.argv.index("--state-dir") + 1])


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


@fault_app.command("crash-manager")
def crash_manager(ctx: typer.Context) -> None:
    """Kill the manager (SIGKILL); `havm restart manager` starts it again."""
    cluster = _cluster(ctx)
    manager = _component(cluster, "manager", "manager")
    if _in_containers(cluster):
        container_faults.kill(cluster, manager, "the manager")
    else:
        _kill(cluster, manager)
    _console().print("manager crashed")


@fault_app.command("crash-broker")
def crash_broker(ctx: typer.Context) -> None:
    """Kill the MQTT broker (SIGKILL); `havm restart broker` starts it again."""
    cluster = _cluster(ctx)
    broker = _component(cluster, "broker", "broker")
    if _in_containers(cluster):
        container_faults.kill(cluster, broker, "the broker")
    else:
        _kill(cluster, broker)
    _console().print("broker crashed")


def start_host(ctx: typer.Context, host: str) -> None:
    """Power on a host that crashed or was powered off: a fresh agent boots."""
    cluster = _cluster(ctx)
    agent = _agent(cluster, host)
    if _in_containers(cluster):
        container_faults.start(cluster, agent, f"host {host}")
        _console().print(f"host {host} started")
        return
    if is_running(agent):
        if agent.fault != POWERED_OFF:
            raise ContextError(f"host {host} is already running")
        # The powered-off process holds the host's memory: that is lost at power-on.
        _signal(agent, signal.SIGKILL)
        _wait_dead(agent)
    _start(cluster, agent)
    _console().print(f"host {host} started")


def restart(
    ctx: typer.Context,
    component: Annotated[Restartable, typer.Argument(help="manager or broker")],
) -> None:
    """Start the manager or the broker again (stopping it first if it runs)."""
    cluster = _cluster(ctx)
    target = _component(cluster, component.value, component.value)
    if _in_containers(cluster):
        container_faults.restart(cluster, target, UpSettings().stop_timeout)
        _console().print(f"{component.value} restarted")
        return
    if is_running(target):
        stop_components([target], UpSettings().stop_timeout)
    _start(cluster, target)
    _console().print(f"{component.value} restarted")


def register_fault_commands(app: typer.Typer, host_app: typer.Typer) -> None:
    app.add_typer(fault_app, name="fault")
    app.command("restart")(restart)
    host_app.command("start")(start_host)

"""The faults of `havm fault` done to the containers of a compose cluster.

The same faults as on a local cluster, done with the container engine instead of
signals and the fault relay, so that they cross real container boundaries and real
(virtual) network interfaces:

- crash: `kill` the container (SIGKILL to all its processes; the broker sees the
  connection close and publishes the host's last will);
- power-off and freeze: `pause` (the cgroup freezer: nothing runs, nothing closes);
  thaw: `unpause`; a powered-off host is started again by `havm host start`, which
  kills the paused container first (its memory is lost, as at power-off);
- isolate --from heartbeat|management|migration|all: `network disconnect` of that
  network of the compose project, like a pulled cable; heal: `network connect` with
  the aliases the container had there;
- crash-manager, crash-broker: kill; `havm restart manager|broker` starts them again;
- crash-at: the crash point is written into the container's state directory.
"""

from __future__ import annotations

import time

from havm.cli.compose_cluster import ComposeSettings, wait_healthy
from havm.cli.containers import ContainerEngine
from havm.cli.context import POWERED_OFF, ClusterContext, Component, ContextError, write_context
from havm.cli.processes import LocalClusterError

NETWORKS = ("heartbeat", "management", "migration")
# Where the agent and the manager of deploy/compose.yaml keep their state, and the file
# there that arms a crash point (the agent's and the manager's ARM_FILE).
STATE_DIRS = {"agent": "/var/lib/havm/host", "manager": "/var/lib/havm/manager"}
ARM_FILE = "crash-at"


def _engine(cluster: ClusterContext) -> ContainerEngine:
    return ContainerEngine(cluster.engine)


def _wait_status(engine: ContainerEngine, name: str, wanted: set[str], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while (status := engine.inspect(name).status) not in wanted:
        if time.monotonic() > deadline:
            raise ContextError(f"container {name} is {status}, not {' or '.join(sorted(wanted))}")
        time.sleep(0.05)


def _require_running(engine: ContainerEngine, component: Component, label: str) -> str:
    status = engine.inspect(component.container).status
    if status not in ("running", "paused"):
        raise ContextError(f"{label} is not running (its container {component.container} is {status})")
    return status


def kill(cluster: ClusterContext, component: Component, label: str) -> None:
    engine = _engine(cluster)
    _require_running(engine, component, label)
    engine.kill(component.container)
    _wait_status(engine, component.container, {"exited", "stopped"})
    component.fault = ""
    write_context(cluster)


def pause(cluster: ClusterContext, component: Component, label: str, fault: str) -> None:
    engine = _engine(cluster)
    status = _require_running(engine, component, label)
    if status == "paused" and component.fault == POWERED_OFF:
        raise ContextError(f"{label} is powered off: start it with `havm host start`")
    if status != "paused":
        engine.pause(component.container)
    component.fault = fault
    write_context(cluster)


def thaw(cluster: ClusterContext, component: Component, label: str) -> None:
    engine = _engine(cluster)
    status = _require_running(engine, component, label)
    if component.fault == POWERED_OFF:
        raise ContextError(f"{label} is powered off: start it with `havm host start`")
    if status != "paused":
        raise ContextError(f"{label} is not frozen")
    engine.unpause(component.container)
    component.fault = ""
    write_context(cluster)


def _network(cluster: ClusterContext, kind: str) -> str:
    return f"{cluster.project}_{kind}"


def isolate(cluster: ClusterContext, component: Component, kinds: list[str]) -> None:
    """Disconnect the container from each network; remember its aliases there."""
    engine = _engine(cluster)
    state = engine.inspect(component.container)
    for kind in kinds:
        network = _network(cluster, kind)
        if kind in component.cut:
            continue
        if network not in state.networks:
            raise ContextError(f"container {component.container} is not on the network {network}")
        engine.disconnect(network, component.container)
        component.cut[kind] = {
            "address": state.addresses.get(network, ""),
            "aliases": state.networks[network],
        }
        write_context(cluster)


def heal(cluster: ClusterContext, component: Component) -> None:
    """Connect the container again to every network it was cut from, with the address
    and aliases it had there; return once a peer resolves its names on each (the
    network's DNS learns them a moment after the connection)."""
    engine = _engine(cluster)
    for kind, was in sorted(component.cut.items()):
        network = _network(cluster, kind)
        aliases = list(was.get("aliases", []))
        if network not in engine.inspect(component.container).networks:
            # The same address: peers that knew it, and their caches, find it again.
            engine.connect(network, component.container, aliases, str(was.get("address", "")))
        del component.cut[kind]
        write_context(cluster)
        # Asked from a peer on that network, as a peer's call will ask.
        asker = _peer_on(cluster, engine, network, component.container)
        for alias in [a for a in aliases if a != asker]:
            _wait_resolvable(engine, asker, alias)


def _peer_on(cluster: ClusterContext, engine: ContainerEngine, network: str, container: str) -> str:
    """Another running container of the cluster on `network`; the container itself if none."""
    for other in cluster.components.values():
        if other.container and other.container != container:
            state = engine.inspect(other.container)
            if state.running and network in state.networks:
                return other.container
    return container


RESOLVES = "import socket, sys; socket.getaddrinfo(sys.argv[1], None)"


def _wait_resolvable(engine: ContainerEngine, container: str, name: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            engine.run("exec", container, "python", "-c", RESOLVES, name, timeout=10.0)
            return
        except ContextError:
            if time.monotonic() > deadline:
                raise ContextError(
                    f"container {container} is connected again, but {name} does not resolve "
                    f"after {timeout:.0f} s"
                ) from None
            time.sleep(0.1)


def arm(cluster: ClusterContext, component: Component, kind: str, point: str) -> None:
    """Write the crash point into the component's state directory inside its container."""
    engine = _engine(cluster)
    if engine.inspect(component.container).status != "running":
        raise ContextError(f"container {component.container} is not running")
    engine.write_file(component.container, f"{STATE_DIRS[kind]}/{ARM_FILE}", point + "\n")


def start(cluster: ClusterContext, component: Component, label: str) -> None:
    """Start a stopped container (a powered-off one is killed first) and wait until it
    passes its health check."""
    engine = _engine(cluster)
    status = engine.inspect(component.container).status
    if status in ("running", "paused"):
        if component.fault != POWERED_OFF:
            raise ContextError(f"{label} is already running")
        engine.kill(component.container)
        _wait_status(engine, component.container, {"exited", "stopped"})
    engine.start(component.container)
    component.fault = ""
    write_context(cluster)
    _wait_healthy(cluster, engine, component)


def restart(cluster: ClusterContext, component: Component, timeout: float) -> None:
    engine = _engine(cluster)
    if engine.inspect(component.container).status in ("running", "paused"):
        if engine.inspect(component.container).status == "paused":
            engine.unpause(component.container)
        engine.stop(component.container, timeout)
    engine.start(component.container)
    component.fault = ""
    write_context(cluster)
    _wait_healthy(cluster, engine, component)


def _wait_healthy(cluster: ClusterContext, engine: ContainerEngine, component: Component) -> None:
    one = ClusterContext(cluster.state_dir, "", {component.name: component}, engine=cluster.engine)
    try:
        wait_healthy(one, engine, ComposeSettings(healthy_timeout=30.0))
    except LocalClusterError as exc:
        raise ContextError(str(exc)) from None

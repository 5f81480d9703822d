"""A cluster in containers: `havm up --runtime compose` and `havm down` for it.

The compose file (deploy/compose.yaml) describes the containers; this module runs the
compose tool on it, bounded by a timeout (podman-compose can hang on `depends_on`),
waits for every container's own health check by polling (podman runs none by itself
without systemd), has the manager refresh once, and writes the context file that the
other commands read: the manager's published address, and which container is which
component, so that `havm fault` acts on containers instead of processes.

Containers are told apart by labels of the compose file: the compose project's, and
`org.havm.component` (broker, manager, agent). An agent's host is its container's host
name, as the agent itself takes it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
from rich.console import Console

from havm.cli.containers import ContainerEngine, ContainerState, find_engine, last_line
from havm.cli.context import (
    COMPOSE,
    LOCAL,
    ClusterContext,
    Component,
    ContextError,
    context_path,
    read_context,
    write_context,
)
from havm.cli.processes import LocalClusterError, is_running, refresh_and_wait
from havm.healthcheck import grpc_serving

DEFAULT_COMPOSE_FILE = Path("deploy") / "compose.yaml"
DEFAULT_PROJECT = "havm"
COMPONENT_LABEL = "org.havm.component"
PROJECT_LABEL = "com.docker.compose.project"
MANAGER_PORT = "50051/tcp"


@dataclass(frozen=True)
class ComposeSettings:
    """Timeouts of the compose runtime, in seconds."""

    up_timeout: float = 180.0
    healthy_timeout: float = 60.0
    down_timeout: float = 120.0
    poll_interval: float = 0.5
    refresh_timeout: float = 15.0


def compose_command(engine: str) -> list[str]:
    """The compose tool that goes with the engine: podman-compose, or `docker compose`."""
    if engine == "docker":
        return ["docker", "compose"]
    found = shutil.which("podman-compose") or shutil.which(
        "podman-compose", path=str(Path(sys.executable).parent)
    )
    if not found:
        raise ContextError("podman-compose is not installed: `pip install podman-compose`")
    return [found]


def _compose(cluster: ClusterContext, *args: str, timeout: float) -> None:
    argv = [*compose_command(cluster.engine), "-f", cluster.compose_file, "-p", cluster.project, *args]
    # Its own session, so that nothing it started outlives a timeout or an interrupt
    # (Ctrl-C reaches only our own process group).
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    except OSError as exc:
        raise ContextError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
    try:
        output, _ = proc.communicate(timeout=timeout)
    except BaseException as exc:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        if isinstance(exc, subprocess.TimeoutExpired):
            raise ContextError(
                f"`{' '.join(args)}` of {cluster.compose_file} did not finish within {timeout:.0f} s"
            ) from None
        raise
    if proc.returncode != 0:
        raise ContextError(f"`{' '.join(args)}` of {cluster.compose_file} failed: {last_line(output)}")


def discover(cluster: ClusterContext, engine: ContainerEngine) -> dict[str, Component]:
    """The components of the compose project, by the labels of their containers."""
    components: dict[str, Component] = {}
    for container in engine.containers(f"{PROJECT_LABEL}={cluster.project}"):
        kind = container.labels.get(COMPONENT_LABEL, "")
        # Agents and the broker are reached inside the compose networks only: the
        # manager's own host list tells where it reaches each agent.
        address = ""
        if kind == "agent":
            name = f"agent:{container.hostname or container.name}"
        elif kind in ("manager", "broker"):
            name = kind
        else:
            continue
        if kind == "manager":
            address = _published(container)
        components[name] = Component(name, address, container=container.name)
    if "manager" not in components:
        raise ContextError(
            f"compose project {cluster.project} has no container labelled {COMPONENT_LABEL}=manager"
        )
    return components


def _published(container: ContainerState) -> str:
    address = container.published.get(MANAGER_PORT)
    if not address:
        raise ContextError(f"container {container.name} does not publish the manager's port {MANAGER_PORT}")
    host, _, port = address.rpartition(":")
    return f"{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"


def compose_context(state_dir: Path, compose_file: Path, project: str, engine: str = "") -> ClusterContext:
    """A context for a compose project: the one `havm up` wrote, or one found anew from
    the project's running containers (a cluster started with the compose tool itself)."""
    previous = read_context(state_dir)
    if previous is not None and previous.runtime == COMPOSE and previous.project == project:
        return previous
    refuse_beside_local(previous, state_dir)
    refuse_another_project(previous, state_dir, project)
    state_dir.mkdir(parents=True, exist_ok=True)
    cluster = ClusterContext(
        str(state_dir),
        "",
        runtime=COMPOSE,
        compose_file=str(compose_file.resolve()),
        project=project,
        engine=find_engine(engine),
    )
    cluster.components = discover(cluster, ContainerEngine(cluster.engine))
    return cluster


def refuse_beside_local(previous: ClusterContext | None, state_dir: Path) -> None:
    """One state directory holds one cluster: not a compose one beside running processes."""
    if (
        previous is not None
        and previous.runtime == LOCAL
        and any(is_running(c) for c in previous.components.values())
    ):
        raise ContextError(
            f"a local cluster runs in {state_dir}: stop it with `havm down` or give another --state-dir"
        )


def refuse_another_project(previous: ClusterContext | None, state_dir: Path, project: str) -> None:
    """One state directory holds one compose project while that project has containers."""
    if previous is None or previous.runtime != COMPOSE or previous.project == project:
        return
    if ContainerEngine(previous.engine).containers(f"{PROJECT_LABEL}={previous.project}"):
        raise ContextError(
            f"{state_dir} holds compose project {previous.project}: remove it with `havm down` "
            "or give another --state-dir"
        )


def up(
    state_dir: Path, compose_file: Path, project: str, console: Console, settings: ComposeSettings
) -> ClusterContext:
    if not compose_file.is_file():
        raise LocalClusterError(
            f"no compose file {compose_file}: give --compose-file (the repository's is deploy/compose.yaml)"
        )
    state_dir.mkdir(parents=True, exist_ok=True)
    previous = read_context(state_dir)
    refuse_beside_local(previous, state_dir)
    refuse_another_project(previous, state_dir, project)
    started = time.monotonic()
    cluster = ClusterContext(
        str(state_dir.resolve()),
        "",
        runtime=COMPOSE,
        compose_file=str(compose_file.resolve()),
        project=project,
        engine=find_engine(previous.engine if previous and previous.runtime == COMPOSE else ""),
    )
    compose_command(cluster.engine)  # the tool is there, before anything is recorded
    console.print(f"havm: starting compose project {project} from {compose_file}")
    # Recorded before anything starts: `havm down` finds the project whatever happens next.
    write_context(cluster)
    try:
        _compose(cluster, "up", "-d", timeout=settings.up_timeout)
        engine = ContainerEngine(cluster.engine)
        cluster.components = discover(cluster, engine)
        write_context(cluster)
        wait_healthy(cluster, engine, settings)
        refresh_and_wait(cluster.manager_address, settings.refresh_timeout)
        wait_hosts_ok(cluster.manager_address, settings)
    except KeyboardInterrupt:
        # Stopped while starting: what came up goes again, as with a local cluster.
        down(cluster, console, False, settings)
        raise
    except (LocalClusterError, ContextError) as exc:
        # The containers stay, so that their logs tell why; `havm down` removes them.
        raise LocalClusterError(f"{exc} (`havm down` removes what started)") from None
    except grpc.RpcError as exc:
        details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
        raise LocalClusterError(
            f"the manager did not answer: {details} (`havm down` removes what started)"
        ) from None
    for row in component_rows(cluster):
        address = row["address"] or "-"
        console.print(f"  {row['name']:<18} {row['container']:<14} {address:<18} {row['state']}")
    console.print(
        f"havm: compose cluster healthy in {time.monotonic() - started:.2f} s; "
        f"manager at {cluster.manager_address} (state in {state_dir})"
    )
    return cluster


def wait_healthy(cluster: ClusterContext, engine: ContainerEngine, settings: ComposeSettings) -> None:
    """Until every container passes its own health check (the manager: gRPC health on
    its published port); raise naming those that do not, or that stopped."""
    pending = dict(cluster.components)
    deadline = time.monotonic() + settings.healthy_timeout
    while pending:
        for name, component in list(pending.items()):
            state = engine.inspect(component.container)
            if state.status in ("exited", "stopped", "dead"):
                raise LocalClusterError(
                    f"container {component.container} ({name}) stopped during start-up: "
                    f"see `{cluster.engine} logs {component.container}`"
                )
            if name == "manager":
                healthy = grpc_serving(component.address)
            else:
                healthy = state.running and engine.healthy(component.container)
            if healthy:
                del pending[name]
        if not pending:
            return
        if time.monotonic() > deadline:
            names = ", ".join(sorted(c.container for c in pending.values()))
            raise LocalClusterError(f"not healthy after {settings.healthy_timeout:.0f} s: {names}")
        time.sleep(settings.poll_interval)


def wait_hosts_ok(manager: str, settings: ComposeSettings) -> None:
    """Until the manager judges every host ok. Containers start in no set order: an agent
    that came up before the broker's name resolved retries, and until its heartbeats
    arrive the manager rightly holds it isolated or not responding."""
    from havm.v1 import manager_pb2, manager_pb2_grpc

    deadline = time.monotonic() + settings.healthy_timeout
    with grpc.insecure_channel(manager) as channel:
        stub = manager_pb2_grpc.ManagerServiceStub(channel)
        while True:
            hosts = stub.ListHosts(manager_pb2.ListHostsRequest(), timeout=10).hosts
            waiting = {h.name: h.state for h in hosts if h.state != manager_pb2.HOST_STATE_OK}
            if not waiting:
                return
            if time.monotonic() > deadline:
                states = ", ".join(
                    f"{name} {manager_pb2.HostState.Name(state).removeprefix('HOST_STATE_').lower()}"
                    for name, state in sorted(waiting.items())
                )
                raise LocalClusterError(f"hosts not ok after {settings.healthy_timeout:.0f} s: {states}")
            time.sleep(settings.poll_interval)


def down(cluster: ClusterContext, console: Console, volumes: bool, settings: ComposeSettings) -> None:
    """Stop and remove the project's containers and networks (and, asked to, its volumes:
    the manager's database and the SAN); leave nothing of it behind."""
    engine = ContainerEngine(cluster.engine)
    present = engine.containers(f"{PROJECT_LABEL}={cluster.project}")
    for container in present:
        if container.status == "paused":
            # A powered-off or frozen host: the compose tool would neither stop nor remove it.
            engine.kill(container.name)
    _compose(cluster, "down", *(["--volumes"] if volumes else []), timeout=settings.down_timeout)
    left = engine.containers(f"{PROJECT_LABEL}={cluster.project}")
    if left:
        raise ContextError(f"containers left after down: {', '.join(c.name for c in left)}")
    context_path(Path(cluster.state_dir)).unlink(missing_ok=True)
    kept = "" if volumes else "; its volumes (the manager's database, the SAN) are kept"
    count = len(present)
    console.print(f"havm: removed the {count} containers of compose project {cluster.project}{kept}")


def component_rows(cluster: ClusterContext) -> list[dict[str, object]]:
    """Each component's container and what the engine says of it, for `havm status`."""
    engine = ContainerEngine(cluster.engine)
    rows: list[dict[str, object]] = []
    for name, component in sorted(
        cluster.components.items(), key=lambda kv: (kv[0] != "broker", kv[0] != "manager", kv[0])
    ):
        try:
            state = engine.inspect(component.container).status
        except ContextError:
            state = "missing"
        if component.fault and state == "paused":
            state = component.fault.replace("_", " ")
        if component.cut:
            state += f", cut from {', '.join(sorted(component.cut))}"
        rows.append(
            {
                "name": name,
                "container": component.container,
                "address": component.address,
                "state": state,
                "alive": state.startswith("running"),
            }
        )
    return rows


def follow_logs(cluster: ClusterContext) -> None:
    """The containers' logs, each line with its container's name, until Ctrl-C."""
    names = [c.container for c in cluster.components.values()]
    if cluster.engine == "podman":
        argv = ["podman", "logs", "--follow", "--names", "--tail", "0", *names]
    else:
        argv = ["docker", "compose", "-f", cluster.compose_file, "-p", cluster.project, "logs", "-f"]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    try:
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()  # only a reader of logs: nothing of it needs to end gracefully
            proc.wait()

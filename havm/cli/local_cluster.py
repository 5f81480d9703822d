"""`havm up` and `havm down`: run a whole emulated cluster as local processes.

`up` is the composition root of a local cluster: it validates the topology, chooses
free loopback ports, writes one host configuration per agent and a resolved topology
(with the agents' addresses) for the manager, starts the broker, the agents and the
manager as processes of their own, waits until each reports healthy, and records them
in the context file that the other commands read. `up` on a partly running cluster
starts only what is missing, on the same ports. `down` stops every process gracefully
(SIGTERM, then SIGKILL after a timeout) and leaves none behind.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from havm.cli import compose_cluster
from havm.cli.cluster_pki import PkiError, ensure_cluster_identities
from havm.cli.cluster_secrets import heartbeat_secret
from havm.cli.compose_cluster import ComposeSettings
from havm.cli.context import (
    COMPOSE,
    ClusterContext,
    Component,
    ContextError,
    Runtime,
    Security,
    admin_identity,
    default_state_dir,
    read_context,
    write_context,
)
from havm.cli.mosquitto_broker import MosquittoMissing, is_mosquitto, mosquitto_argv, write_mosquitto_files
from havm.cli.processes import (
    LocalClusterError,
    MqttBroker,
    UpSettings,
    is_relay,
    is_running,
    refresh_and_wait,
    spawn,
    stop_components,
    wait_healthy,
)
from havm.contract.host_config import agent_config, agent_config_json
from havm.contract.topology import Topology, TopologyError, without_host
from havm.contract.topology_file import (
    TopologyFileError,
    load_topology_file,
    topology_from_yaml,
    topology_to_yaml,
)
from havm.faultnet import write_faults
from havm.ports import free_ports, port_is_free

# ----------------------------------------------------------------------------- topology


def load_topology(path: Path | None, max_hosts: int = UpSettings.max_hosts) -> tuple[Topology, str]:
    """Parse the topology file (or the built-in default); return it and its source name."""
    raise_with = " (havm up starts one process of about 45 MiB per host; --max-hosts N raises the limit)"
    try:
        if path is None:
            text = resources.files("havm.cli").joinpath("default_topology.yaml").read_text()
            return topology_from_yaml(text, max_hosts, raise_with), "built-in default topology"
        return load_topology_file(path, max_hosts, raise_with), str(path)
    except (TopologyFileError, TopologyError) as exc:
        raise LocalClusterError(f"topology {path or 'built-in default'}: {exc}") from None


def security_argv(identity_file: Path | None) -> list[str]:
    """How a component proves who it is: its identity file, or --insecure."""
    return ["--identity", str(identity_file)] if identity_file is not None else ["--insecure"]


def agent_argv(
    state_dir: Path, host: str, config_file: Path, listen: str, broker: str, identity_file: Path | None
) -> list[str]:
    """The command line of one node agent of the local cluster."""
    return [
        sys.executable,
        "-m",
        "node_agent",
        "--config",
        str(config_file),
        "--state-dir",
        str(state_dir / "hosts" / host),
        "--listen",
        listen,
        "--broker",
        broker,
        *security_argv(identity_file),
    ]


def relay_argv(links_file: Path, faults_file: Path) -> list[str]:
    return [sys.executable, "-m", "havm.faultnet", "--links", str(links_file), "--faults", str(faults_file)]


def argv_value(component: Component, flag: str) -> str:
    """The value of a command-line option of a component (its --links file, say)."""
    return component.argv[component.argv.index(flag) + 1]


# ----------------------------------------------------------------------------- up / down


def _port(address: str) -> int:
    return int(address.rpartition(":")[2])


def fixed_agent_addresses(topology: Topology, old: dict[str, Component]) -> dict[str, str]:
    """The agent addresses the topology sets; each must be a usable loopback address."""
    fixed = {}
    for index, host in enumerate(topology.hosts):
        if not host.address:
            continue
        name, field = f"agent:{host.name}", f"hosts[{index}].address"
        ip, _, port = host.address.rpartition(":")
        if not (ip == "localhost" or ip.startswith("127.")) or not port.isdigit():
            raise LocalClusterError(
                f"topology: {field}: havm up runs every agent on this machine, so it must be a "
                f"loopback address such as 127.0.0.1:50061, got {host.address!r}"
            )
        held_by_us = name in old and old[name].address == host.address and is_running(old[name])
        if not held_by_us and not port_is_free(int(port)):
            raise LocalClusterError(f"topology: {field}: {host.address} is already in use")
        fixed[name] = host.address
    return fixed


def link_names(topology: Topology) -> list[str]:
    """The network paths the fault relay carries: each host's heartbeat and management path."""
    return [f"{path}:{h.name}" for h in topology.hosts for path in ("heartbeat", "management")]


def plan_components(
    state_dir: Path,
    topology: Topology,
    previous: ClusterContext | None,
    security: Security,
    mqtt_broker: str = MqttBroker.amqtt.value,
) -> tuple[ClusterContext, Topology]:
    """Decide every component's address and command line; write the files they read.

    Addresses the topology sets are used as they are. Ports recorded by a previous `up`
    are kept while they are free or still held by the same running component, so that a
    restarted component comes back where it was; the others are chosen free. Each
    host's heartbeat path (agent to broker) and management path (manager to agent) go
    through the fault relay, so that `havm fault isolate` can cut them.
    """
    names = ["broker", "faultnet", "manager"] + [f"agent:{h.name}" for h in topology.hosts]
    links = link_names(topology)
    old = previous.components if previous else {}
    # Hosts `havm host add` started keep their processes, addresses and files: the
    # manager has their addresses in its database, not in the topology.
    added = [h for h in (previous.added_hosts if previous else []) if f"agent:{h}" in old]
    kept_elsewhere = {_port(address) for h in added for address in added_host_addresses(old, h).values()}
    faultnet_dir = state_dir / "faultnet"
    links_file, faults_file = faultnet_dir / "links.json", faultnet_dir / "faults.json"
    old_links = json.loads(links_file.read_text()) if links_file.exists() else {}
    relay_running = "faultnet" in old and is_running(old["faultnet"])

    def keeps_port(name: str) -> bool:
        if name in old:
            c = old[name]
            return is_running(c) or port_is_free(_port(c.address))
        if name in old_links:
            return relay_running or port_is_free(_port(old_links[name]["listen"]))
        return False

    def previous_address(name: str) -> str:
        return old[name].address if name in old else old_links[name]["listen"]

    endpoints = [n for n in names if n != "faultnet"] + links
    kept = fixed_agent_addresses(topology, old)
    kept.update({n: previous_address(n) for n in endpoints if n not in kept and keeps_port(n)})
    fresh = iter(
        free_ports(len(endpoints) - len(kept), exclude={_port(a) for a in kept.values()} | kept_elsewhere)
    )
    address = {n: kept.get(n) or f"127.0.0.1:{next(fresh)}" for n in endpoints}
    address["faultnet"] = address[links[0]]  # it is up when its first path accepts

    logs, agents_dir, san = state_dir / "logs", state_dir / "agents", state_dir / "san"
    for d in (logs, agents_dir, san, faultnet_dir, state_dir / "hosts", state_dir / "manager"):
        d.mkdir(parents=True, exist_ok=True)

    link_targets = {}
    for h in topology.hosts:
        link_targets[f"heartbeat:{h.name}"] = address["broker"]
        link_targets[f"management:{h.name}"] = address[f"agent:{h.name}"]
    links_file.write_text(
        json.dumps({n: {"listen": address[n], "target": link_targets[n]} for n in links}, indent=2) + "\n"
    )
    # The manager reaches each agent through that host's management path.
    resolved = topology.with_addresses({h.name: address[f"management:{h.name}"] for h in topology.hosts})
    # Migration streams go agent to agent directly, as on a live-migration network of
    # their own: not through the management path's relay.
    resolved = resolved.with_migration_addresses({h.name: address[f"agent:{h.name}"] for h in topology.hosts})
    topology_file = state_dir / "topology.yaml"
    write_resolved_topology(topology_file, resolved)
    secret_file, secret = heartbeat_secret(state_dir)
    identities = ensure_cluster_identities(state_dir, topology) if security is Security.mutual_tls else None
    py = sys.executable
    # The broker admits the cluster's users only, but for a cluster run --insecure.
    broker_secret = secret if security is Security.mutual_tls else None
    if mqtt_broker == "mosquitto":
        hosts = [h.name for h in topology.hosts] + list(added)
        config = write_mosquitto_files(state_dir, address["broker"], broker_secret, hosts)
        broker_argv = mosquitto_argv(config)
    else:
        broker_argv = [py, "-m", "havm.broker", "--listen", address["broker"]]
        if broker_secret is not None:
            broker_argv += ["--secret-file", str(secret_file)]
    argv: dict[str, list[str]] = {
        "broker": broker_argv,
        "faultnet": relay_argv(links_file, faults_file),
        "manager": [
            py,
            "-m",
            "manager",
            "--topology",
            str(topology_file),
            "--state-dir",
            str(state_dir / "manager"),
            "--listen",
            address["manager"],
            "--broker",
            address["broker"],
            "--heartbeat-secret",
            str(secret_file),
            *security_argv(identities.manager if identities else None),
        ],
    }
    for host in topology.hosts:
        config_file = agents_dir / f"{host.name}.json"
        config_file.write_text(agent_config_json(agent_config(topology, host, san, secret)))
        argv[f"agent:{host.name}"] = agent_argv(
            state_dir,
            host.name,
            config_file,
            address[f"agent:{host.name}"],
            address[f"heartbeat:{host.name}"],
            identities.agent(host.name) if identities else None,
        )
    for added_name in added:
        # The broker may have moved; a relay started again reads its paths afresh.
        write_added_host_links(old, added_name, address["broker"])
        names += [f"agent:{added_name}", f"faultnet:{added_name}"]

    components = {}
    for name in names:
        log_name = name.replace(":", "-") + ".log"
        if name in old and (is_running(old[name]) or name not in argv):
            components[name] = old[name]  # already running, or a host added since: leave it alone
        else:
            components[name] = Component(
                name=name, address=address[name], log=str(logs / log_name), argv=argv[name]
            )
    context = ClusterContext(str(state_dir), str(topology_file), components, security=security.value)
    context.added_hosts = added
    context.removed_hosts = list(previous.removed_hosts) if previous else []
    return context, resolved


def chosen_broker(settings: UpSettings, previous: ClusterContext | None) -> str:
    """The broker `up` runs: the one asked for, else the one the cluster ran, else amqtt."""
    if settings.mqtt_broker is not None:
        return settings.mqtt_broker
    broker = previous.components.get("broker") if previous is not None else None
    return (
        MqttBroker.mosquitto.value
        if broker is not None and is_mosquitto(broker.argv)
        else MqttBroker.amqtt.value
    )


def write_resolved_topology(path: Path, topology: Topology) -> None:
    """The topology the manager reads: every host with the address it reaches the agent at."""
    path.write_text(
        topology_to_yaml(
            topology, "Written by `havm up`: the topology with the address the manager reaches each agent at."
        )
    )


def without_removed_hosts(topology: Topology, previous: ClusterContext | None) -> Topology:
    """The topology without the hosts `havm host remove` took out of this cluster."""
    for name in previous.removed_hosts if previous else []:
        if any(h.name == name for h in topology.hosts):
            try:
                topology = without_host(topology, name)
            except TopologyError as exc:
                raise LocalClusterError(
                    f"topology: host {name} was removed from this cluster: {exc}"
                ) from None
    return topology


def added_host_addresses(components: dict[str, Component], host: str) -> dict[str, str]:
    """Where an added host's agent and its two relayed paths listen."""
    agent, relay = components[f"agent:{host}"], components.get(f"faultnet:{host}")
    addresses = {"agent": agent.address}
    if relay is not None:
        try:
            links = json.loads(Path(argv_value(relay, "--links")).read_text())
        except (OSError, ValueError):
            return addresses
        addresses.update({name.split(":", 1)[0]: link["listen"] for name, link in links.items()})
    return addresses


def promised_ports(ctx: ClusterContext) -> set[int]:
    """Every port a component of the local cluster listens on, or will when it starts again."""
    ports = {_port(c.address) for c in ctx.components.values()}
    links_file = Path(ctx.state_dir) / "faultnet" / "links.json"
    if links_file.exists():
        ports |= {_port(link["listen"]) for link in json.loads(links_file.read_text()).values()}
    for host in ctx.added_hosts:
        if f"agent:{host}" in ctx.components:
            ports |= {_port(a) for a in added_host_addresses(ctx.components, host).values()}
    return ports


def write_added_host_links(components: dict[str, Component], host: str, broker: str) -> None:
    """The added host's relay paths: heartbeats to the broker, management calls to its agent."""
    relay = components.get(f"faultnet:{host}")
    if relay is None:
        return
    links_file = Path(argv_value(relay, "--links"))
    links = json.loads(links_file.read_text())
    links[f"heartbeat:{host}"]["target"] = broker
    links[f"management:{host}"]["target"] = components[f"agent:{host}"].address
    links_file.write_text(json.dumps(links, indent=2) + "\n")


def up(
    topology_path: Path | None,
    state_dir: Path,
    console: Console,
    settings: UpSettings = UpSettings(),
) -> ClusterContext:
    """Start whatever of the local cluster is not running; return its context."""
    started_at = time.monotonic()
    state_dir = state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    # The database, the context file and the logs are the cluster's owner's alone.
    state_dir.chmod(0o700)
    previous = read_context(state_dir)
    security = Security.insecure if settings.insecure else Security.mutual_tls
    if previous is not None and previous.runtime == COMPOSE:
        raise LocalClusterError(
            f"{state_dir} holds compose project {previous.project}: remove it with `havm down` "
            "or give another --state-dir"
        )
    if topology_path is None and previous is not None and previous.topology_source:
        # Restarting a cluster: the file it was started from, not the resolved copy.
        topology_path = Path(previous.topology_source)
    topology, source = load_topology(topology_path, settings.max_hosts)
    topology = without_removed_hosts(topology, previous)
    running = [c.name for c in previous.components.values() if is_running(c)] if previous else []
    if previous is not None and running and previous.security != security:
        now = "in plaintext (--insecure)" if previous.security == Security.insecure else "with mutual TLS"
        raise LocalClusterError(
            f"the cluster in {state_dir} runs {now}: a `havm up` cannot change that while it runs "
            "(`havm down` first)"
        )
    if security is Security.insecure:
        console.print(
            "havm: [bold red]INSECURE[/]: --insecure runs plaintext gRPC without identities; any local "
            "process can order the manager and the agents about. For debugging only."
        )
    try:
        ctx, _ = plan_components(state_dir, topology, previous, security, chosen_broker(settings, previous))
    except (PkiError, MosquittoMissing) as exc:
        raise LocalClusterError(str(exc)) from None
    ctx.topology_source = str(topology_path.resolve()) if topology_path else ""
    to_start = [c for c in ctx.components.values() if not is_running(c)]
    if not to_start:
        console.print(f"havm: the cluster in {state_dir} is already running")
        return ctx
    console.print(f"havm: starting {len(to_start)} processes from the {source}")
    for relay in (c for c in to_start if is_relay(c.name)):
        # A relay that starts anew starts with every path connected.
        write_faults(Path(argv_value(relay, "--faults")), set(), 0)
    started = {c.name: spawn(c) for c in to_start}
    write_context(ctx)  # record pids at once, so `havm down` finds a half-started cluster
    try:
        # Every component, not only those just started, but for hosts put in a fault.
        identity = admin_identity(ctx)
        wait_healthy([c for c in ctx.components.values() if not c.fault], started, settings, identity)
        refresh_and_wait(ctx.manager_address, settings.refresh_timeout, identity)
    except (LocalClusterError, KeyboardInterrupt):
        stop_components(to_start, settings.stop_timeout)
        write_context(ctx)
        raise
    except Exception as exc:  # a gRPC failure of the first refresh, for instance
        stop_components(to_start, settings.stop_timeout)
        raise LocalClusterError(f"the cluster did not come up: {exc}") from None
    elapsed = time.monotonic() - started_at
    console.print(components_table(ctx, started={c.name for c in to_start}))
    console.print(f"havm: cluster healthy in {elapsed:.2f} s (state in {state_dir})")
    return ctx


def down(state_dir: Path, console: Console, timeout: float, volumes: bool = False) -> None:
    ctx = read_context(state_dir.resolve())
    if ctx is None:
        console.print(f"havm: no cluster in {state_dir}")
        return
    if ctx.runtime == COMPOSE:
        compose_cluster.down(ctx, console, volumes, ComposeSettings(down_timeout=max(timeout, 10.0) * 6))
        return
    running = [c for c in ctx.components.values() if is_running(c)]
    # The manager first, so that it does not judge the agents' departure as host failures.
    manager = [c for c in running if c.name == "manager"]
    killed = stop_components(manager, timeout)
    killed += stop_components([c for c in running if c.name != "manager"], timeout)
    for c in ctx.components.values():
        c.pid, c.fault = 0, ""
    write_context(ctx)
    note = f" ({', '.join(killed)} killed after {timeout:.0f} s)" if killed else ""
    console.print(f"havm: stopped {len(running)} processes{note}")


def components_table(ctx: ClusterContext, started: set[str] | None = None) -> Table:
    table = Table("component", "address", "pid", "state", "log")
    for name, c in sorted(
        ctx.components.items(), key=lambda kv: (kv[0] != "broker", kv[0] != "manager", kv[0])
    ):
        alive = is_running(c)
        state = "started" if started and name in started and alive else ("running" if alive else "stopped")
        if alive and c.fault:
            state = c.fault.replace("_", " ")
        table.add_row(name, c.address, str(c.pid or "-"), state, os.path.relpath(c.log, ctx.state_dir))
    return table


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: stop as on Ctrl-C (a container runtime stops a container so)."""


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While inside, SIGTERM raises Terminated where Ctrl-C raises KeyboardInterrupt, so
    that `havm up` in the foreground stops its cluster either way; a Python process as a
    container's PID 1 would otherwise ignore SIGTERM."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers (an embedded CLI runs elsewhere)
        return

    def terminate(signum: int, frame: object) -> None:
        # One stop is enough: a second SIGTERM must not cut the stopping short.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def follow_logs(ctx: ClusterContext, console: Console, poll: float = 0.2) -> None:
    """Print every component's new log lines, prefixed with its name, until Ctrl-C."""
    offsets = {}
    for c in ctx.components.values():
        try:
            offsets[c.name] = Path(c.log).stat().st_size
        except OSError:
            offsets[c.name] = 0
    reported_dead: set[str] = set()
    while True:
        for c in ctx.components.values():
            try:
                with open(c.log, "rb") as f:
                    f.seek(offsets[c.name])
                    chunk = f.read()
            except OSError:
                continue
            complete = chunk.rfind(b"\n") + 1
            offsets[c.name] += complete
            for line in chunk[:complete].decode(errors="replace").splitlines():
                console.print(f"[bold cyan]{c.name:>16}[/] {line}", markup=True, highlight=False)
            if not is_running(c) and c.name not in reported_dead:
                reported_dead.add(c.name)
                console.print(f"[bold red]{c.name:>16}[/] process {c.pid} is not running")
        time.sleep(poll)


# ----------------------------------------------------------------------------- commands


def state_dir_option(ctx: typer.Context, explicit: Path | None = None) -> Path:
    """The state directory: the command's own --state-dir, the global one, or the default."""
    if explicit is not None:
        return explicit
    root = ctx.find_root()
    value = (root.params or {}).get("state_dir")
    return Path(value) if value else default_state_dir()


def _fail(message: str) -> None:
    # Plain print: rich would wrap a long sentence at the terminal width.
    print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(1)


def register_local_commands(app: typer.Typer) -> None:
    """Add `up` and `down` to the `havm` command line."""

    @app.command("up")
    def up_command(
        ctx: typer.Context,
        topology: Path | None = typer.Option(
            None,
            "--topology",
            "-t",
            help="Topology YAML file (default: built-in 4-node cluster + 1 standalone host).",
        ),
        state_dir: Path | None = typer.Option(
            None, "--state-dir", help="Where the cluster keeps its state (default ./.havm)."
        ),
        detach: bool = typer.Option(False, "--detach", "-d", help="Return once every component is healthy."),
        timeout: float = typer.Option(30.0, help="Seconds to wait for the components to be healthy."),
        max_hosts: int = typer.Option(
            UpSettings.max_hosts, "--max-hosts", min=1, help="Refuse a topology of more hosts than this."
        ),
        mqtt_broker: MqttBroker | None = typer.Option(
            None,
            "--mqtt-broker",
            case_sensitive=False,
            help="The heartbeat broker: the embedded amqtt (default), or Debian's mosquitto (as the "
            "containers run). A cluster started before keeps its broker.",
        ),
        insecure: bool = typer.Option(
            False,
            "--insecure",
            help="Plaintext gRPC without identities (debugging only): anyone local can call the manager.",
        ),
        runtime: Runtime = typer.Option(
            Runtime.local,
            "--runtime",
            case_sensitive=False,
            help="local: processes of this machine; compose: the containers of a compose file.",
        ),
        compose_file: Path = typer.Option(
            compose_cluster.DEFAULT_COMPOSE_FILE, "--compose-file", help="With --runtime compose."
        ),
        project: str = typer.Option(
            compose_cluster.DEFAULT_PROJECT, "--project", help="The compose project, with --runtime compose."
        ),
    ) -> None:
        """Start the broker, the manager and one agent per host; follow their logs."""
        console = Console(highlight=False, soft_wrap=True)
        directory = state_dir_option(ctx, state_dir)
        if runtime is Runtime.compose:
            if topology is not None:
                _fail("--topology: the compose file mounts its own topology (deploy/topology.yaml)")
            compose_up(directory, compose_file, project, detach, timeout, console)
            return
        settings = UpSettings(
            healthy_timeout=timeout,
            max_hosts=max_hosts,
            insecure=insecure,
            mqtt_broker=mqtt_broker.value if mqtt_broker else None,
        )
        start_then_follow(
            lambda: up(topology, directory, console, settings),
            lambda cluster: follow_logs(cluster, console),
            lambda cluster: down(directory, console, settings.stop_timeout),
            detach,
            console,
            "stops the cluster",
        )

    @app.command("down")
    def down_command(
        ctx: typer.Context,
        state_dir: Path | None = typer.Option(None, "--state-dir", help="The cluster's state directory."),
        timeout: float = typer.Option(10.0, help="Seconds between SIGTERM and SIGKILL."),
        volumes: bool = typer.Option(
            False, "--volumes", help="A compose cluster: also remove its volumes (database, SAN)."
        ),
    ) -> None:
        """Stop every process of the local cluster (SIGTERM, then SIGKILL), or remove the
        containers of a compose cluster."""
        try:
            down(state_dir_option(ctx, state_dir), Console(highlight=False, soft_wrap=True), timeout, volumes)
        except ContextError as exc:
            _fail(str(exc))


def compose_up(
    directory: Path, compose_file: Path, project: str, detach: bool, timeout: float, console: Console
) -> None:
    """`havm up --runtime compose`: the compose cluster up and healthy; in the foreground,
    its containers' logs until Ctrl-C or SIGTERM, which remove the containers again."""
    settings = ComposeSettings(healthy_timeout=max(timeout, 60.0))
    start_then_follow(
        lambda: compose_cluster.up(directory, compose_file, project, console, settings),
        compose_cluster.follow_logs,
        lambda cluster: compose_cluster.down(cluster, console, False, settings),
        detach,
        console,
        "removes the containers",
    )


def start_then_follow(
    start: Callable[[], ClusterContext],
    follow: Callable[[ClusterContext], None],
    stop: Callable[[ClusterContext], None],
    detach: bool,
    console: Console,
    what_stopping_does: str,
) -> None:
    """Start the cluster; unless detached, follow its logs until Ctrl-C or SIGTERM, then
    stop it. A signal during the start leaves the start to undo what it began."""
    with sigterm_as_interrupt():
        try:
            cluster = start()
        except (LocalClusterError, ContextError) as exc:
            _fail(str(exc))
            return
        except KeyboardInterrupt as interrupt:
            # The shell's codes for the signal.
            raise typer.Exit(143 if isinstance(interrupt, Terminated) else 130) from None
        if detach:
            return
        console.print(f"havm: following the logs; Ctrl-C or SIGTERM {what_stopping_does}")
        try:
            follow(cluster)
        except KeyboardInterrupt as interrupt:
            why = " (SIGTERM)" if isinstance(interrupt, Terminated) else ""
            console.print(f"havm: stopping{why}")
            stop(cluster)

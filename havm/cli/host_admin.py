"""`havm host add` and `havm host remove`: hosts joining and leaving a running cluster.

On a local cluster `add` does for one host what `havm up` does for each: it writes the
agent's host configuration (the cluster it belongs to, the shared volumes it sees
under the cluster's SAN directory), starts the agent and a fault relay of its own for
its heartbeat and management paths (the running relay's paths are fixed when it
starts), records both in the context file, and then registers the host with the
manager (AddHost), which refreshes it. Anything that fails undoes what was started.
`remove` unregisters the host (RemoveHost, refused while VMs are on it) and only then
stops its processes. With `--address`, `add` only registers an agent that already runs
somewhere else.

The host's description is a host entry of the topology's format (`--config FILE`, and
the flags on top), with the running cluster's `host_defaults` for anything not given.
"""

from __future__ import annotations

import enum
import json
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer

from havm.cli import render
from havm.cli.client import ManagerClient
from havm.cli.cluster_pki import ensure_host_identity
from havm.cli.cluster_secrets import heartbeat_secret
from havm.cli.context import (
    COMPOSE,
    ClusterContext,
    Component,
    ContextError,
    Security,
    admin_identity,
    read_context,
    write_context,
)
from havm.cli.errors import CliError, JobFailed, NotFound
from havm.cli.jobs import finish, wait_for_job
from havm.cli.local_cluster import (
    agent_argv,
    promised_ports,
    relay_argv,
    write_resolved_topology,
)
from havm.cli.mosquitto_broker import is_mosquitto, write_mosquitto_files
from havm.cli.mosquitto_broker import reload as reload_broker
from havm.cli.options import INT32_MAX, OutputFormat, OutputOption, global_options
from havm.cli.processes import (
    LocalClusterError,
    UpSettings,
    is_running,
    spawn,
    stop_components,
    wait_healthy,
)
from havm.contract.heartbeat_auth import host_key
from havm.contract.host_config import agent_config_json, host_agent_config, host_to_proto
from havm.contract.topology import (
    HostSpec,
    Topology,
    TopologyError,
    VolumeSpec,
    host_defaults_of,
    parse_host_entry,
    seen_by_every_node,
    without_host,
)
from havm.contract.topology_file import TopologyFileError, load_topology_file, read_topology_text, yaml_data
from havm.faultnet import write_faults
from havm.ports import free_ports
from havm.v1 import common_pb2, manager_pb2

GIB = 1024**3
SHARED_KINDS = (common_pb2.STORAGE_KIND_CSV, common_pb2.STORAGE_KIND_LUN)


class Profile(enum.StrEnum):
    hyperv_2008 = "hyperv-2008"
    hyperv_2008r2 = "hyperv-2008r2"
    esx = "esx"


# --- the host's description ---------------------------------------------------------------


def running_topology_data(cluster: ClusterContext | None) -> Any:
    """The topology file the local cluster was started from, as YAML data (the built-in
    default when there is no local cluster or it was started without --topology)."""
    source = Path(cluster.topology_source) if cluster is not None and cluster.topology_source else None
    try:
        if source is None:
            return yaml_data(resources.files("havm.cli").joinpath("default_topology.yaml").read_text())
        return yaml_data(read_topology_text(source))
    except TopologyFileError as exc:
        raise CliError(f"cannot read the cluster's topology {source}: {exc}") from None


def host_spec(
    name: str,
    cluster_name: str,
    defaults_data: Any,
    config: Path | None,
    overrides: dict[str, Any],
) -> HostSpec:
    """The host entry of `config` with the flags on top and the topology's host_defaults
    under both, read by the topology's own rules; one sentence naming the field if wrong."""
    entry: Any = {}
    where = f"host {name}"
    if config is not None:
        where = f"config {config}"
        try:
            entry = yaml_data(read_topology_text(config))
        except TopologyFileError as exc:
            raise CliError(f"config {config}: {exc}") from None
        if not isinstance(entry, dict):
            raise CliError(f"config {config}: must be a host entry of the topology's format (a mapping)")
        if entry.get("name", name) != name:
            raise CliError(f"config {config}: name: is {entry['name']!r}, but the command adds host {name!r}")
    entry = {**entry, "name": name, **{k: v for k, v in overrides.items() if v is not None}}
    try:
        spec = parse_host_entry(entry, host_defaults_of(defaults_data), field="host")
    except TopologyError as exc:
        raise CliError(f"{where}: {exc}") from None
    return replace(spec, cluster=cluster_name or None)


def volumes_for_new_node(manager: ManagerClient, cluster_name: str) -> list[VolumeSpec]:
    """The cluster's volumes a node joining it sees, by the manager's rule: every CSV and
    each LUN every current node sees (as the nodes report them)."""
    cluster = manager.get_cluster(cluster_name)
    nodes = manager.list_hosts(cluster_name)
    seen: dict[str, list[str]] = {v.name: [] for v in cluster.volumes}
    for node in nodes:
        for volume in node.volumes:
            seen.setdefault(volume.name, []).append(node.name)
    csvs = [v.name for v in cluster.volumes if v.kind == common_pb2.STORAGE_KIND_CSV]
    visible = set(seen_by_every_node([n.name for n in nodes], seen, csvs))
    return [
        VolumeSpec(v.name, render.STORAGE_PREFIXES[v.kind], v.capacity_bytes // GIB, ())
        for v in cluster.volumes
        if v.name in visible and v.kind in SHARED_KINDS
    ]


# --- the calls (ManagerClient's translation of errors) -------------------------------------


def call_add_host(manager: ManagerClient, config: common_pb2.HostConfig) -> manager_pb2.AddHostResponse:
    return manager.add_host(config)


def call_remove_host(manager: ManagerClient, name: str) -> manager_pb2.Job:
    return manager.remove_host(name)


# --- the local processes of an added host ---------------------------------------------------


def start_host_processes(
    cluster: ClusterContext, spec: HostSpec, volumes: list[VolumeSpec], settings: UpSettings
) -> HostSpec:
    """Start the host's agent and its relay as `havm up` would; return the spec with the
    address the manager reaches the agent at (through the relay) and its own migration
    address. Nothing is left running or recorded if it does not come up."""
    state_dir = Path(cluster.state_dir)
    name = spec.name
    agent_port, heartbeat_port, management_port = free_ports(3, exclude=promised_ports(cluster))
    agent, heartbeat, management = (f"127.0.0.1:{p}" for p in (agent_port, heartbeat_port, management_port))
    faultnet = state_dir / "faultnet"
    links_file, faults_file = faultnet / f"links-{name}.json", faultnet / f"faults-{name}.json"
    links = {
        f"heartbeat:{name}": {"listen": heartbeat, "target": cluster.broker_address},
        f"management:{name}": {"listen": management, "target": agent},
    }
    links_file.write_text(json.dumps(links, indent=2) + "\n")
    write_faults(faults_file, set(), 0)
    config_file = state_dir / "agents" / f"{name}.json"
    # The cluster's timing and isolation response, as every other agent of it runs with.
    running = resolved_topology(cluster)
    config_file.write_text(
        agent_config_json(
            host_agent_config(
                spec,
                volumes,
                state_dir / "san",
                running.timing,
                running.isolation.response,
                heartbeat_key=host_key(heartbeat_secret(state_dir)[1], name),
            )
        )
    )
    identity_file = None
    if cluster.security == Security.mutual_tls:
        identity_file = ensure_host_identity(state_dir, name, spec.cluster or None)
    broker = cluster.components.get("broker")
    if broker is not None and is_mosquitto(broker.argv):
        # mosquitto knows its users by name: the new host's goes into its files first.
        secret = heartbeat_secret(state_dir)[1] if cluster.security == Security.mutual_tls else None
        hosts = [h.name for h in running.hosts] + [*cluster.added_hosts, name]
        write_mosquitto_files(state_dir, broker.address, secret, hosts)
        reload_broker(broker.pid)
    logs = state_dir / "logs"
    components = [
        Component(
            f"faultnet:{name}",
            heartbeat,
            log=str(logs / f"faultnet-{name}.log"),
            argv=relay_argv(links_file, faults_file),
        ),
        Component(
            f"agent:{name}",
            agent,
            log=str(logs / f"agent-{name}.log"),
            argv=agent_argv(state_dir, name, config_file, agent, heartbeat, identity_file),
        ),
    ]
    started = {c.name: spawn(c) for c in components}
    cluster.components.update({c.name: c for c in components})
    cluster.added_hosts.append(name)
    write_context(cluster)  # the pids at once, so that `havm down` finds them whatever happens
    try:
        wait_healthy(components, started, settings, admin_identity(cluster))
    except (LocalClusterError, KeyboardInterrupt) as exc:
        stop_host_processes(cluster, name, settings)
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise CliError(f"the agent of host {name} did not start: {exc}") from None
    return replace(spec, address=management, migration_address=agent)


def stop_host_processes(cluster: ClusterContext, name: str, settings: UpSettings) -> bool:
    """Stop the host's agent (and relay), forget them; True if any was running."""
    components = [c for n, c in cluster.components.items() if n in (f"agent:{name}", f"faultnet:{name}")]
    running = any(is_running(c) for c in components)
    stop_components(components, settings.stop_timeout)
    for c in components:
        del cluster.components[c.name]
    if name in cluster.added_hosts:
        cluster.added_hosts.remove(name)
    write_context(cluster)
    return running


def resolved_topology(cluster: ClusterContext) -> Topology:
    """The topology the manager of the local cluster reads (`havm up` wrote it)."""
    try:
        return load_topology_file(Path(cluster.topology))
    except (TopologyFileError, TopologyError) as exc:
        raise CliError(f"cannot read the cluster's topology {cluster.topology}: {exc}") from None


# --- the commands ---------------------------------------------------------------------------


def in_containers(ctx: typer.Context) -> bool:
    cluster = read_context(global_options(ctx).state_dir.resolve())
    return cluster is not None and cluster.runtime == COMPOSE


def local_cluster(ctx: typer.Context) -> ClusterContext | None:
    """The cluster of processes `havm up` started here; None for none, or for a cluster
    in containers (whose hosts are services of its compose file, not started by havm)."""
    cluster = read_context(global_options(ctx).state_dir.resolve())
    if cluster is None or cluster.runtime == COMPOSE:
        return None
    return cluster if cluster.components else None


def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The new host's name.")],
    cluster_name: Annotated[
        str, typer.Option("--cluster", help="The cluster it joins as a node; standalone when omitted.")
    ] = "",
    profile: Annotated[
        Profile | None,
        typer.Option("--profile", case_sensitive=False, help="Its hypervisor; a node runs its cluster's."),
    ] = None,
    memory_mb: Annotated[
        int | None, typer.Option("--memory-mb", min=1, max=INT32_MAX, help="Its memory, in MB.")
    ] = None,
    host_reserve_mb: Annotated[
        int | None,
        typer.Option("--host-reserve-mb", min=0, max=INT32_MAX, help="Memory the parent partition keeps."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", metavar="FILE", help="A YAML host entry in the topology's format."),
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            metavar="HOST:PORT",
            help="Register an agent that already runs there; no process is started.",
        ),
    ] = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Add a host to the running cluster: start its agent (on a local cluster) and register it.

    What is not given comes from the running cluster's topology (its host_defaults).
    """
    options = global_options(ctx)
    cluster = local_cluster(ctx)
    if address is None and in_containers(ctx):
        raise ContextError(
            "the cluster runs in containers: add the host as a service of its compose file, "
            "then register it with --address HOST:PORT"
        )
    if address is None and cluster is None:
        raise ContextError(
            f"no local cluster in {options.state_dir}: `havm host add` starts the host's agent in a "
            "cluster `havm up` started; give --address HOST:PORT to register an agent that already runs"
        )
    overrides = {
        "profile": profile.value if profile else None,
        "memory_mb": memory_mb,
        "host_reserve_mb": host_reserve_mb,
        "address": address,
    }
    spec = host_spec(name, cluster_name, running_topology_data(cluster), config, overrides)
    manager = options.client()
    try:
        manager.get_host(name)
    except NotFound:
        pass
    else:
        raise CliError(f"host {name} already exists")
    volumes = volumes_for_new_node(manager, cluster_name) if cluster_name else []

    # The local cluster runs the new agent, unless it runs elsewhere already (--address).
    local = cluster if address is None else None
    settings = UpSettings()
    if local is not None:
        if f"agent:{name}" in local.components:
            raise CliError(f"the local cluster already runs an agent for host {name}")
        spec = start_host_processes(local, spec, volumes, settings)
    try:
        job = wait_for_job(manager, call_add_host(manager, host_to_proto(spec)).job, output)
        if job.state == manager_pb2.JOB_STATE_FAILED and local is not None:
            _forget(manager, name)  # its agent does not answer: undo it all
    except BaseException:
        if local is not None:
            stop_host_processes(local, name, settings)
        raise
    if job.state == manager_pb2.JOB_STATE_FAILED:
        if local is not None:
            stop_host_processes(local, name, settings)
        raise JobFailed(job.error or f"adding host {name} failed")
    host = manager.get_host(name)
    if output is OutputFormat.json:
        render.print_json(render.host_dict(host))
        return
    where = f"cluster {cluster_name}" if cluster_name else "the cluster as a standalone host"
    state = render.host_dict(host)["state"]
    print(f"host {name} added to {where} ({state}; agent at {spec.migration_address or spec.address})")


def _forget(manager: ManagerClient, name: str) -> None:
    try:
        wait_for_job(manager, call_remove_host(manager, name), OutputFormat.json)
    except CliError:
        pass  # the host's processes go anyway; the manager reports it not responding


def remove(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The host to remove.")],
    output: OutputOption = OutputFormat.table,
) -> None:
    """Remove a host from the cluster (refused while VMs are on it), then stop its agent."""
    options = global_options(ctx)
    cluster = local_cluster(ctx)
    settings = UpSettings()
    declared = (
        cluster is not None and name not in cluster.added_hosts and f"agent:{name}" in cluster.components
    )
    smaller: Topology | None = None
    if declared:
        assert cluster is not None
        try:
            smaller = without_host(resolved_topology(cluster), name)
        except TopologyError as exc:
            raise CliError(f"host {name} cannot be removed from the local cluster: {exc}") from None
    manager = options.client()
    try:
        job = call_remove_host(manager, name)
    except NotFound:
        if cluster is not None and name in cluster.added_hosts:
            stop_host_processes(cluster, name, settings)
            print(f"host {name} was not registered with the manager; its agent was stopped")
            return
        raise
    job = wait_for_job(manager, job, output)
    stopped = False
    if job.state == manager_pb2.JOB_STATE_COMPLETED and cluster is not None:
        if smaller is not None:
            # The manager reads this copy when it starts: the host stays removed.
            write_resolved_topology(Path(cluster.topology), smaller)
            cluster.removed_hosts.append(name)
        stopped = stop_host_processes(cluster, name, settings)
    finish(job, output, f"host {name} removed" + (" and its agent stopped" if stopped else ""))


def register_host_admin_commands(host_app: typer.Typer) -> None:
    """Adds `host add` and `host remove` to the `host` command group."""
    host_app.command("add")(add)
    host_app.command("remove")(remove)

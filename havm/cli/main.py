"""The `havm` command: global options, the read and job commands, and the entry point.

`run()` is the console script. It is the one place that turns every expected failure
(`CliError`, `ContextError`, an interrupted wait) into one `error: ...` line and an exit
code, so no command needs its own try/except.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from contextlib import closing
from pathlib import Path
from typing import Annotated, Any

import grpc
import typer

from havm.cli import compose_cluster, render
from havm.cli.capacity import register_capacity_commands
from havm.cli.client import ClientSettings
from havm.cli.cluster_config import register_cluster_config_commands
from havm.cli.context import (
    COMPOSE,
    DEFAULT_STATE_DIR,
    ENV_IDENTITY,
    ENV_MANAGER,
    ENV_STATE_DIR,
    ContextError,
    manager_address,
    read_context,
)
from havm.cli.errors import CliError
from havm.cli.faults import register_fault_commands
from havm.cli.ha import register_ha_commands
from havm.cli.host_admin import register_host_admin_commands
from havm.cli.host_changes import register_host_change_commands
from havm.cli.host_cluster_resources import register_host_cluster_resource_commands
from havm.cli.jobs import finish, wait_for_job
from havm.cli.library import register_library_commands
from havm.cli.local_cluster import register_local_commands
from havm.cli.migration import register_migration_commands
from havm.cli.options import (
    INT32_MAX,
    EmbeddedManager,
    GlobalOptions,
    OutputFormat,
    OutputOption,
    client,
    global_options,
)
from havm.cli.pki_commands import pki_app
from havm.cli.scenario import scenario_app
from havm.cli.vm import vm_app
from havm.ports import PortRangeError

ENV_TIMEOUT = "HAVM_TIMEOUT"
ENV_DEBUG = "HAVM_DEBUG"

app = typer.Typer(
    name="havm",
    help="Drive an emulated highly available virtualization cluster.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
host_app = typer.Typer(help="Inspect, add and remove the emulated hosts.", no_args_is_help=True)
cluster_app = typer.Typer(help="Inspect and refresh clusters.", no_args_is_help=True)
job_app = typer.Typer(help="Follow the manager's jobs.", no_args_is_help=True)
app.add_typer(host_app, name="host")
app.add_typer(cluster_app, name="cluster")
app.add_typer(vm_app, name="vm")
app.add_typer(job_app, name="job")
app.add_typer(scenario_app, name="scenario")
app.add_typer(pki_app, name="pki")


@app.callback()
def main(
    ctx: typer.Context,
    manager: Annotated[
        str | None,
        typer.Option("--manager", envvar=ENV_MANAGER, metavar="ADDRESS", help="The manager's host:port."),
    ] = None,
    state_dir: Annotated[
        Path,
        typer.Option(
            "--state-dir", envvar=ENV_STATE_DIR, metavar="DIR", help="Where `havm up` keeps its state."
        ),
    ] = Path(DEFAULT_STATE_DIR),
    timeout: Annotated[
        float,
        typer.Option("--timeout", envvar=ENV_TIMEOUT, min=0.1, metavar="SECONDS", help="Per-call timeout."),
    ] = ClientSettings.call_timeout_s,
    identity: Annotated[
        Path | None,
        typer.Option(
            "--identity",
            envvar=ENV_IDENTITY,
            metavar="FILE",
            help="Who to be to the manager: an identity file (certificate, key, CA). "
            "Default: the admin identity of the --state-dir cluster.",
        ),
    ] = None,
) -> None:
    embedded = ctx.obj if isinstance(ctx.obj, EmbeddedManager) else None
    options = GlobalOptions(
        manager=manager,
        state_dir=state_dir,
        identity=identity,
        settings=ClientSettings(call_timeout_s=timeout),
        embedded=embedded,
    )
    ctx.obj = options
    ctx.call_on_close(options.close)


# status


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False  # os.kill(0, ...) would signal our own process group
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


@app.command()
def status(ctx: typer.Context, output: OutputOption = OutputFormat.table) -> None:
    """The manager's summary and, for a local cluster, its processes."""
    options = global_options(ctx)
    context = read_context(options.state_dir)
    in_containers = context is not None and context.runtime == COMPOSE
    if context is not None and in_containers:
        components = compose_cluster.component_rows(context)
    else:
        components = [
            {"name": c.name, "address": c.address, "pid": c.pid, "alive": _alive(c.pid)}
            for c in (context.components.values() if context else [])
        ]
    address = manager_address(options.manager, options.state_dir)
    failure: CliError | None = None
    manager: dict[str, Any] | None = None
    try:
        manager = {"address": address, **render.status_dict(options.client().get_status())}
    except CliError as exc:
        failure = exc  # still show the local processes: they tell which one is down
    if output is OutputFormat.json:
        render.print_json({"manager": manager, "components": components})
    else:
        if manager is not None:
            print(
                f"manager {address} (version {manager['version'] or '-'}, "
                f"VMM {manager['vmm_version'] or '-'}): "
                f"hosts {manager['hosts_ok']}/{manager['hosts_total']} ok, "
                f"VMs {manager['vms_running']}/{manager['vms_total']} running, "
                f"{manager['jobs_running']} job(s) running"
            )
            render.print_table("clusters", manager["clusters"], render.CLUSTER_COLUMNS)
        if components and in_containers:
            render.print_table("containers", components, render.CONTAINER_COLUMNS)
        elif components:
            render.print_table("local processes", components, render.COMPONENT_COLUMNS)
    if failure is not None:
        raise failure


# hosts


@host_app.command("list")
def list_hosts(
    ctx: typer.Context,
    cluster: Annotated[str, typer.Option("--cluster", help="Only the nodes of this cluster.")] = "",
    output: OutputOption = OutputFormat.table,
) -> None:
    """List hosts with their state and free memory."""
    rows = [render.host_dict(h) for h in client(ctx).list_hosts(cluster)]
    if output is OutputFormat.json:
        render.print_json(rows)
    else:
        render.print_table(None, rows, render.HOST_COLUMNS)


@host_app.command("show")
def show_host(ctx: typer.Context, name: str, output: OutputOption = OutputFormat.table) -> None:
    """Show one host: CPU, memory, disks, networks, shared volumes."""
    row = render.host_dict(client(ctx).get_host(name))
    if output is OutputFormat.json:
        render.print_json(row)
    else:
        render.print_object(f"host {name}", row, render.DETAIL_FORMATTERS)


# clusters


@cluster_app.command("list")
def list_clusters(ctx: typer.Context, output: OutputOption = OutputFormat.table) -> None:
    """List clusters with their nodes and reserve state."""
    rows = [render.cluster_dict(c) for c in client(ctx).list_clusters()]
    if output is OutputFormat.json:
        render.print_json(rows)
    else:
        render.print_table(None, rows, render.CLUSTER_COLUMNS)


@cluster_app.command("show")
def show_cluster(ctx: typer.Context, name: str, output: OutputOption = OutputFormat.table) -> None:
    """Show one cluster."""
    row = render.cluster_dict(client(ctx).get_cluster(name))
    if output is OutputFormat.json:
        render.print_json(row)
    else:
        render.print_object(f"cluster {name}", row, render.DETAIL_FORMATTERS)


@cluster_app.command("refresh")
def refresh_cluster(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(help="A cluster or host; all hosts when omitted.")] = "",
    output: OutputOption = OutputFormat.table,
) -> None:
    """Pull every agent's inventory and reconcile it (waits for the job)."""
    manager = client(ctx)
    job = wait_for_job(manager, manager.refresh_cluster(target), output)
    # The manager's own sentence says what was refreshed and how many hosts answered.
    finish(job, output, job.message or f"refreshed {target or 'every host'}")


# jobs


@job_app.command("list")
def list_jobs(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", min=1, max=INT32_MAX, help="How many, newest first.")] = 50,
    output: OutputOption = OutputFormat.table,
) -> None:
    """List recent jobs, newest first."""
    rows = [render.job_dict(j) for j in client(ctx).list_jobs(limit)]
    if output is OutputFormat.json:
        render.print_json(rows)
    else:
        render.print_table(None, rows, render.JOB_COLUMNS)


@job_app.command("show")
def show_job(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(metavar="ID")],
    output: OutputOption = OutputFormat.table,
) -> None:
    """Show one job."""
    row = render.job_dict(client(ctx).get_job(job_id))
    if output is OutputFormat.json:
        render.print_json(row)
    else:
        render.print_object(f"job {job_id}", row)


@job_app.command("watch")
def watch_job(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(metavar="ID")],
    output: OutputOption = OutputFormat.table,
) -> None:
    """Follow a job to its end; exits 1 if it failed."""
    manager = client(ctx)
    job = wait_for_job(manager, manager.get_job(job_id), output)
    if output is OutputFormat.table:
        render.print_object(f"job {job_id}", render.job_dict(job))
    finish(job, output, None)


@app.command("events")
def events(
    ctx: typer.Context,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new events.")] = False,
    last: Annotated[int, typer.Option("--last", min=0, max=INT32_MAX, help="Recent events first.")] = 50,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Cluster events: host and VM state changes, detector verdicts, failover actions."""
    console = render.stdout()
    # Closed whatever ends the loop (Ctrl-C while printing): see jobs._watch.
    with closing(client(ctx).watch_events(last, follow)) as events:
        for event in events:
            row = render.event_dict(event)
            if output is OutputFormat.json:
                # One object per line, flushed, so that a pipe sees each event at once.
                print(json.dumps(row), flush=True)
            else:
                subject = " ".join(x for x in (row["host"], row["vm"]) if x)
                line = f"{row['time']}  {row['kind']:<12} {subject:<20} {row['detail']}"
                console.print(line, markup=False)


register_local_commands(app)
register_fault_commands(app, host_app)
register_host_admin_commands(host_app)
register_host_change_commands(host_app)
register_host_cluster_resource_commands(host_app)
register_capacity_commands(vm_app, cluster_app, host_app)
register_migration_commands(app, vm_app)
register_library_commands(app, vm_app)
register_ha_commands(vm_app, host_app)
register_cluster_config_commands(vm_app, cluster_app)


def _fail(message: str, code: int = 1) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def run(argv: list[str] | None = None, obj: object = None) -> None:
    """The console script: run the app; expected failures become one line on stderr.

    `obj` is an EmbeddedManager when a program runs the CLI against its own manager."""
    try:
        app(args=argv, prog_name="havm", obj=obj)
    except (CliError, ContextError, PortRangeError) as exc:
        _fail(str(exc))
    except grpc.RpcError as exc:  # a call that escaped the client's translation
        _fail(exc.details() if isinstance(exc, grpc.Call) else str(exc))
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(1)
    except Exception as exc:  # noqa: BLE001 - a bug: say so in one line unless debugging
        if os.environ.get(ENV_DEBUG):
            traceback.print_exc()
        _fail(f"unexpected {type(exc).__name__}: {exc} (set {ENV_DEBUG}=1 for details)")


if __name__ == "__main__":
    run()

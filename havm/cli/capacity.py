"""Capacity commands: host ratings (`vm place`), the cluster reserve (`cluster set`) and
maintenance mode (`host maintenance start|stop`).

`vm place` is VMM's Select Host page: it creates nothing and shows every host with its
stars and the reasons for fewer or none. Maintenance follows its job with a progress
bar (VMs done of total) and prints each VM's outcome; `-o json` gives the finished
job with its `steps`.
"""

from __future__ import annotations

import enum
from typing import Annotated

import typer

from havm.cli import render
from havm.cli.jobs import finish, wait_for_job
from havm.cli.options import INT32_MAX, OutputFormat, OutputOption, client
from havm.cli.vm import CpusOption, DiskOption, MemoryOption, NetworkOption, StorageOption, parse_storage
from havm.v1 import manager_pb2

RATING_COLUMNS = {"host": "HOST", "cluster": "CLUSTER", "stars": "STARS", "why": "REASONS"}


class MaintenanceModeChoice(enum.StrEnum):
    live = "live"
    save = "save"


def place_vm(
    ctx: typer.Context,
    memory_mb: MemoryOption,
    cpus: CpusOption = None,
    disk_gb: DiskOption = None,
    ha: Annotated[bool, typer.Option("--ha", help="A highly available VM.")] = False,
    storage: StorageOption = None,
    network: NetworkOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Rate every host for a VM of this shape, best first, with the reasons (creates nothing)."""
    request = manager_pb2.RateHostsRequest(
        memory_mb=memory_mb,
        cpus=cpus or 0,
        disk_gb=disk_gb or 0,
        highly_available=ha,
        networks=network or [],
    )
    location = parse_storage(storage)
    if location is not None:
        request.storage.CopyFrom(location)
    reply = client(ctx).rate_hosts(request)
    rows = [render.rating_dict(r) for r in reply.ratings]
    goal = render.enum_word(manager_pb2.PlacementGoal, reply.goal, "PLACEMENT_GOAL_")
    if output is OutputFormat.json:
        render.print_json({"best_host": reply.best_host or None, "goal": goal, "ratings": rows})
        return
    table = [
        {
            "host": row["host"],
            "cluster": row["cluster"],
            "stars": f"{render.stars_text(row['stars'])} {row['stars']:g}",
            "why": "\n".join(
                ("\N{HEAVY MULTIPLICATION X} " if r["blocking"] else "") + r["detail"] for r in row["reasons"]
            ),
        }
        for row in rows
    ]
    render.print_table(f"placement goal: {goal}", table, RATING_COLUMNS)
    if reply.best_host:
        print(f"best host: {reply.best_host}")
    else:
        print("no host can take this VM")


def set_cluster(
    ctx: typer.Context,
    name: str,
    reserve: Annotated[
        int | None,
        typer.Option("--reserve", min=0, max=INT32_MAX, help="Node failures the cluster must absorb."),
    ] = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Change a cluster's settings; its state is judged again at once."""
    request = manager_pb2.UpdateClusterRequest(name=name)
    if reserve is not None:
        request.reserve = reserve
    manager = client(ctx)
    job = wait_for_job(manager, manager.update_cluster(request).job, output)
    finish(job, output, job.message)


def _print_steps(job: manager_pb2.Job) -> None:
    for step in job.steps:
        outcome = render.enum_word(manager_pb2.JobStepOutcome, step.outcome, "JOB_STEP_OUTCOME_")
        detail = f" ({step.detail})" if step.detail else ""
        print(f"  {step.vm}: {outcome}{detail}")


def start_maintenance(
    ctx: typer.Context,
    host: str,
    mode: Annotated[
        MaintenanceModeChoice | None,
        typer.Option(
            "--mode",
            case_sensitive=False,
            help="live: live-migrate running HA VMs to other nodes and save the rest (the default "
            "where the profile live-migrates); save: save every running VM.",
        ),
    ] = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Take a host out of service: move or save its VMs, then enter maintenance mode."""
    wire = (
        manager_pb2.MaintenanceMode.Value(f"MAINTENANCE_MODE_{mode.value.upper()}")
        if mode is not None
        else manager_pb2.MAINTENANCE_MODE_UNSPECIFIED
    )
    manager = client(ctx)
    job = wait_for_job(manager, manager.start_maintenance(host, wire), output)
    if output is OutputFormat.table:
        if job.state == manager_pb2.JOB_STATE_COMPLETED:
            print(job.message)
        _print_steps(job)
    finish(job, output, None)


def stop_maintenance(ctx: typer.Context, host: str, output: OutputOption = OutputFormat.table) -> None:
    """Put a host in maintenance back into service (nothing moves back; saved VMs stay saved)."""
    manager = client(ctx)
    job = wait_for_job(manager, manager.stop_maintenance(host), output)
    finish(job, output, job.message)


def register_capacity_commands(vm_app: typer.Typer, cluster_app: typer.Typer, host_app: typer.Typer) -> None:
    vm_app.command("place")(place_vm)
    cluster_app.command("set")(set_cluster)
    maintenance_app = typer.Typer(help="Maintenance mode of a host.", no_args_is_help=True)
    maintenance_app.command("start")(start_maintenance)
    maintenance_app.command("stop")(stop_maintenance)
    host_app.add_typer(maintenance_app, name="maintenance")

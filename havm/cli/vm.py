"""`havm vm ...`: create, inspect, power-operate and delete virtual machines.

Each change is a manager job; the command waits for it and reports the outcome in one
line (or as JSON), so `havm vm start web1 && ...` in a script means the VM runs.
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Callable
from typing import Annotated

import typer

from havm.cli import ha as ha_cli
from havm.cli import render, render_config
from havm.cli.client import ManagerClient
from havm.cli.errors import CliError
from havm.cli.jobs import finish, wait_for_job
from havm.cli.options import INT32_MAX, OutputFormat, OutputOption, client
from havm.v1 import agent_pb2, common_pb2, manager_pb2


class RestartPriority(enum.StrEnum):
    high = "high"
    medium = "medium"
    low = "low"
    none = "none"


# The options that describe a VM's shape: `vm create` and `vm place` take the same ones.
MemoryOption = Annotated[int, typer.Option("--memory-mb", min=1, max=INT32_MAX, help="Guest memory.")]
CpusOption = Annotated[
    int | None, typer.Option("--cpus", min=1, max=INT32_MAX, help="Virtual CPUs (default 1).")
]
DiskOption = Annotated[
    int | None, typer.Option("--disk-gb", min=1, max=INT32_MAX, help="Virtual disk size (default 20).")
]
StorageOption = Annotated[
    str | None,
    typer.Option("--storage", metavar="KIND:NAME", help="csv:Volume1, lun:lun1 or local:C."),
]
NetworkOption = Annotated[
    list[str] | None, typer.Option("--network", help="A virtual network it uses; repeatable.")
]

vm_app = typer.Typer(help="Create, list, operate and delete virtual machines.", no_args_is_help=True)

_STORAGE_KINDS = {prefix: kind for kind, prefix in render.STORAGE_PREFIXES.items()}


def parse_storage(text: str | None) -> common_pb2.StorageLocation | None:
    """ "csv:Volume1" -> StorageLocation(CSV, "Volume1")."""
    if text is None:
        return None
    kind, sep, name = text.partition(":")
    if not sep or not name or kind.lower() not in _STORAGE_KINDS:
        raise typer.BadParameter(
            f"{text!r} is not KIND:NAME with KIND one of csv, lun, local (e.g. csv:Volume1)",
            param_hint="'--storage'",
        )
    return common_pb2.StorageLocation(kind=_STORAGE_KINDS[kind.lower()], name=name)


@vm_app.command("list")
def list_vms(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Only the VMs on this host.")] = "",
    output: OutputOption = OutputFormat.table,
) -> None:
    """List virtual machines."""
    rows = [render.vm_dict(vm) for vm in client(ctx).list_vms(host)]
    if output is OutputFormat.json:
        render.print_json(rows)
    else:
        marked = [{**row, "status": render_config.status_cell(row)} for row in rows]
        render.print_table(None, marked, render.VM_COLUMNS)


@vm_app.command("show")
def show_vm(ctx: typer.Context, name: str, output: OutputOption = OutputFormat.table) -> None:
    """Show one virtual machine."""
    row = render.vm_dict(client(ctx).get_vm(name))
    if output is OutputFormat.json:
        render.print_json(row)
    else:
        render.print_object(f"VM {name}", row, render.DETAIL_FORMATTERS)


@vm_app.command("create")
def create_vm(
    ctx: typer.Context,
    name: str,
    memory_mb: MemoryOption,
    cpus: CpusOption = None,
    disk_gb: DiskOption = None,
    ha: Annotated[bool, typer.Option("--ha", help="Make it highly available.")] = False,
    host: Annotated[
        str, typer.Option("--host", help="Place it here instead of letting placement choose.")
    ] = "",
    storage: StorageOption = None,
    network: NetworkOption = None,
    dirty_rate_mb_s: Annotated[
        float | None,
        typer.Option("--dirty-rate-mb-s", min=0, help="Guest memory dirtied per second (default 1)."),
    ] = None,
    journal_writes_per_s: Annotated[
        float | None,
        typer.Option(
            "--journal-writes-per-s", min=0, help="Guest disk journal writes per second (default 2)."
        ),
    ] = None,
    restart_priority: Annotated[
        RestartPriority | None,
        typer.Option(
            "--restart-priority",
            case_sensitive=False,
            help="Failover restart order of a highly available VM (default medium; none: never).",
        ),
    ] = None,
    processor_compatibility: Annotated[
        bool,
        typer.Option(
            "--processor-compatibility",
            help="Show the guest only its CPU vendor's baseline features, so that it can migrate "
            "between processor generations.",
        ),
    ] = False,
    no_start: Annotated[bool, typer.Option("--no-start", help="Leave it stopped.")] = False,
    make_ha: Annotated[
        bool,
        typer.Option(
            "--make-ha",
            help="Placed on a cluster node (--host) without --ha: make it highly available "
            "(asked on a terminal).",
        ),
    ] = False,
    preferred_owners: ha_cli.PreferredOwnersOption = None,
    possible_owners: ha_cli.PossibleOwnersOption = None,
    max_failovers: ha_cli.MaxFailoversOption = None,
    failover_period: ha_cli.FailoverPeriodOption = None,
    failback: ha_cli.FailbackOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Create a virtual machine (and start it unless --no-start)."""
    policy = ha_cli.PolicyOptions(preferred_owners, possible_owners, max_failovers, failover_period, failback)
    manager = client(ctx)
    if host and not ha:
        ha = _made_highly_available(manager, name, host, make_ha, output)
    request = manager_pb2.CreateVmRequest(
        name=name,
        memory_mb=memory_mb,
        cpus=cpus or 0,
        disk_gb=disk_gb or 0,
        highly_available=ha,
        host=host,
        networks=network or [],
        workload=common_pb2.GuestWorkload(
            dirty_rate_mb_per_s=dirty_rate_mb_s, journal_writes_per_s=journal_writes_per_s
        ),
        no_start=no_start,
        processor_compatibility=processor_compatibility,
    )
    if restart_priority is not None:
        request.restart_priority = common_pb2.RestartPriority.Value(
            f"RESTART_PRIORITY_{restart_priority.value.upper()}"
        )
    location = parse_storage(storage)
    if location is not None:
        request.storage.CopyFrom(location)
    if policy.given():
        ha_cli.apply_policy_options(request.failover_policy, policy)
    vm = vm_after_job(manager, manager.create_vm(request).job, name, output)
    if vm is None:
        return
    state = render.enum_word(common_pb2.VmState, vm.state, "VM_STATE_")
    print(f"VM {name} created on {vm.host or 'no host'} ({state})")


def _made_highly_available(
    manager: ManagerClient, name: str, host: str, make_ha: bool, output: OutputFormat
) -> bool:
    """VMM's question when a VM that is not highly available is placed on a cluster node:
    `--make-ha` answers yes; a terminal is asked; otherwise the manager's refusal names
    the flag."""
    if not make_ha and (output is not OutputFormat.table or not sys.stdin.isatty()):
        return False
    cluster = manager.get_host(host).cluster
    if not cluster:
        return False
    return make_ha or ha_cli.confirm_make_ha(name, host, cluster, f"VM {name} was not created")


def vm_after_job(
    manager: ManagerClient, job: manager_pb2.Job, name: str, output: OutputFormat
) -> manager_pb2.Vm | None:
    """Follow a VM's job to its end (a failure ends the command), then print the VM as
    JSON and return None, or return it for the caller's table line."""
    if job.id:
        job = wait_for_job(manager, job, output)
        if job.state == manager_pb2.JOB_STATE_FAILED:
            finish(job, output, None)
    vm = manager.get_vm(name)
    if output is OutputFormat.json:
        render.print_json(render.vm_dict(vm))
        return None
    return vm


_HA_IS_WHERE_IT_RUNS = (
    "a VM becomes highly available by moving into a cluster, not by a setting: stop or save it, then "
    "`havm vm migrate {name} --to NODE --make-ha`"
)
_HA_ENDS_OUTSIDE = (
    "a VM stops being highly available by moving out of its cluster, not by a setting: stop or save "
    "it, then `havm vm migrate {name} --to STANDALONE_HOST`"
)


@vm_app.command("set")
def set_vm(
    ctx: typer.Context,
    name: str,
    processor_compatibility: Annotated[
        bool | None,
        typer.Option(
            "--processor-compatibility/--no-processor-compatibility",
            help="Processor compatibility mode; the VM must be stopped.",
            show_default=False,
        ),
    ] = None,
    preferred_owners: ha_cli.PreferredOwnersOption = None,
    possible_owners: ha_cli.PossibleOwnersOption = None,
    max_failovers: ha_cli.MaxFailoversOption = None,
    failover_period: ha_cli.FailoverPeriodOption = None,
    failback: ha_cli.FailbackOption = None,
    ha: Annotated[
        bool | None,
        typer.Option(
            "--ha/--no-ha",
            help="Refused with the way to do it: a VM becomes highly available by moving into a "
            "cluster, and stops being so by moving out.",
            show_default=False,
        ),
    ] = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Change a VM's settings: processor compatibility, failover policy."""
    if ha is not None:
        raise CliError(_HA_IS_WHERE_IT_RUNS.format(name=name) if ha else _HA_ENDS_OUTSIDE.format(name=name))
    policy = ha_cli.PolicyOptions(preferred_owners, possible_owners, max_failovers, failover_period, failback)
    if processor_compatibility is None and not policy.given():
        raise typer.BadParameter(
            "nothing to change: give --processor-compatibility/--no-processor-compatibility or a "
            "failover policy option (--preferred-owners, --possible-owners, --max-failovers, "
            "--failover-period, --failback)"
        )
    request = manager_pb2.UpdateVmRequest(name=name)
    if processor_compatibility is not None:
        request.processor_compatibility = processor_compatibility
    manager = client(ctx)
    if policy.given():
        request.failover_policy.CopyFrom(manager.get_vm(name).failover_policy)
        ha_cli.apply_policy_options(request.failover_policy, policy)
    vm = vm_after_job(manager, manager.update_vm(request).job, name, output)
    if vm is None:
        return
    lines = []
    if processor_compatibility is not None:
        lines.append(f"processor compatibility {'on' if vm.processor_compatibility else 'off'}")
    if policy.given():
        lines.append(render.policy_text(vm.failover_policy, vm.effective_max_failovers))
    print(f"VM {name}: {'; '.join(lines)}")


def _operation_command(
    operation: agent_pb2.VmOperation, done: str, with_host: bool, help_text: str
) -> Callable[..., None]:
    def command(ctx: typer.Context, name: str, output: OutputOption = OutputFormat.table) -> None:
        manager = client(ctx)
        job = wait_for_job(manager, manager.operate_vm(name, operation), output)
        line = f"VM {name} {done}"
        if with_host and output is OutputFormat.table and job.state == manager_pb2.JOB_STATE_COMPLETED:
            line += _on_host(name, ctx)
        finish(job, output, line)

    command.__doc__ = help_text
    return command


def _on_host(name: str, ctx: typer.Context) -> str:
    try:
        host = client(ctx).get_vm(name).host
    except CliError:
        return ""  # the job succeeded; the host is a nicety, not worth failing for
    return f" on {host}" if host else ""


_OPERATIONS = [
    (
        "start",
        agent_pb2.VM_OPERATION_START,
        "started",
        True,
        "Power on a stopped VM (or restore a saved one).",
    ),
    (
        "stop",
        agent_pb2.VM_OPERATION_TURN_OFF,
        "turned off",
        False,
        "Turn a VM off hard: memory is lost, acknowledged disk writes are kept.",
    ),
    ("shutdown", agent_pb2.VM_OPERATION_SHUTDOWN, "shut down", False, "Ask the guest to shut down cleanly."),
    (
        "save",
        agent_pb2.VM_OPERATION_SAVE,
        "saved",
        False,
        "Save a VM's memory to its storage and release the memory.",
    ),
    ("restore", agent_pb2.VM_OPERATION_RESTORE, "restored", True, "Start a saved VM from its memory image."),
    ("pause", agent_pb2.VM_OPERATION_PAUSE, "paused", False, "Freeze a running VM in memory."),
    ("resume", agent_pb2.VM_OPERATION_RESUME, "resumed", False, "Resume a paused VM."),
]
for _name, _operation, _done, _with_host, _help in _OPERATIONS:
    vm_app.command(_name)(_operation_command(_operation, _done, _with_host, _help))


@vm_app.command("delete")
def delete_vm(
    ctx: typer.Context,
    name: str,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Delete a virtual machine and its files."""
    if not yes and sys.stdin.isatty():
        if not typer.confirm(f"Delete VM {name} and its files?", default=False):
            raise CliError(f"VM {name} was not deleted")
    manager = client(ctx)
    job = wait_for_job(manager, manager.delete_vm(name), output)
    finish(job, output, f"VM {name} deleted")

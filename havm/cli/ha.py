"""High-availability commands: a VM's failover policy, `havm vm repair`, `havm host shutdown`.

The failover policy (owners, threshold, failback) is what a failover cluster keeps per
clustered VM; `vm create` and `vm set` take the same options, defined here once.
`vm set` changes only the options given: it reads the VM's policy, changes those
fields and sends the whole policy back.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Annotated

import typer

from havm.cli import render
from havm.cli.errors import CliError
from havm.cli.jobs import finish, wait_for_job
from havm.cli.options import OutputFormat, OutputOption, client
from havm.v1 import manager_pb2

PreferredOwnersOption = Annotated[
    str | None,
    typer.Option(
        "--preferred-owners",
        metavar="NODE,NODE",
        help="Nodes tried first, in this order, for placement, failover and failback ('' clears).",
    ),
]
PossibleOwnersOption = Annotated[
    str | None,
    typer.Option(
        "--possible-owners",
        metavar="NODE,NODE",
        help="The only nodes it may ever run on ('' means every node of its cluster).",
    ),
]
MaxFailoversOption = Annotated[
    str | None,
    typer.Option(
        "--max-failovers",
        metavar="K|default",
        help="At most K failovers in the failover period, then it is left failed "
        "(default: nodes - 1, as Windows Server 2008 R2).",
    ),
]
FailoverPeriodOption = Annotated[
    str | None,
    typer.Option(
        "--failover-period", metavar="DURATION", help="The threshold's period: 6h, 30m, 90s, 1d (default 6h)."
    ),
]
FailbackOption = Annotated[
    str | None,
    typer.Option(
        "--failback",
        metavar="never|immediate|HH-HH",
        help="Move back to the first preferred owner when it returns: never (default), "
        "immediate, or inside a window of hours such as 22-06.",
    ),
]

_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_WINDOW = re.compile(r"^\s*(?:window\s*[: ]?\s*)?(\d{1,2})\s*-\s*(\d{1,2})\s*$")


@dataclass(frozen=True)
class PolicyOptions:
    preferred_owners: str | None = None
    possible_owners: str | None = None
    max_failovers: str | None = None
    failover_period: str | None = None
    failback: str | None = None

    def given(self) -> bool:
        return any(v is not None for v in vars(self).values())


def _names(text: str, option: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if len(set(names)) != len(names):
        raise typer.BadParameter(f"{option}: a node is named twice in {text!r}")
    return names


def parse_duration(text: str) -> int:
    match = _DURATION.match(text)
    if match is None:
        raise typer.BadParameter(f"--failover-period: {text!r} is not a duration such as 6h, 30m, 90s or 1d")
    seconds = int(match.group(1)) * _UNIT_S[match.group(2)]
    if seconds <= 0:
        raise typer.BadParameter("--failover-period: must be longer than 0")
    return seconds


def apply_policy_options(policy: manager_pb2.FailoverPolicy, options: PolicyOptions) -> None:
    """Change the fields of `policy` that the options name; refuse a malformed value."""
    if options.preferred_owners is not None:
        del policy.preferred_owners[:]
        policy.preferred_owners.extend(_names(options.preferred_owners, "--preferred-owners"))
    if options.possible_owners is not None:
        del policy.possible_owners[:]
        policy.possible_owners.extend(_names(options.possible_owners, "--possible-owners"))
    if options.max_failovers is not None:
        text = options.max_failovers.strip()
        if text == "default":
            policy.ClearField("max_failovers")
        elif text.isdigit():
            policy.max_failovers = int(text)
        else:
            raise typer.BadParameter(f"--max-failovers: {text!r} is not a count (0 or more) or 'default'")
    if options.failover_period is not None:
        policy.failover_period_s = parse_duration(options.failover_period)
    if options.failback is not None:
        _apply_failback(policy, options.failback)


def _apply_failback(policy: manager_pb2.FailoverPolicy, text: str) -> None:
    word = text.strip().lower()
    if word in ("never", "immediate"):
        policy.failback = manager_pb2.FailbackMode.Value(f"FAILBACK_MODE_{word.upper()}")
        policy.failback_window_start_hour = policy.failback_window_end_hour = 0
        return
    match = _WINDOW.match(word)
    if match is None:
        raise typer.BadParameter(
            f"--failback: {text!r} is not never, immediate or a window of hours like 22-06"
        )
    start, end = int(match.group(1)), int(match.group(2))
    if start > 23 or end > 23 or start == end:
        raise typer.BadParameter(f"--failback: {text!r} needs two different hours from 0 to 23")
    policy.failback = manager_pb2.FAILBACK_MODE_WINDOW
    policy.failback_window_start_hour, policy.failback_window_end_hour = start, end


# --- vm repair ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Repair:
    action: manager_pb2.RepairAction
    done: str


_REPAIRS = {
    "retry": _Repair(manager_pb2.REPAIR_ACTION_RETRY, "tried again"),
    "undo": _Repair(manager_pb2.REPAIR_ACTION_UNDO, "back to its last good state"),
    "ignore": _Repair(manager_pb2.REPAIR_ACTION_IGNORE, "as its host reports it"),
    "refresh": _Repair(manager_pb2.REPAIR_ACTION_REFRESH, "judged again"),
}


def repair_vm(
    ctx: typer.Context,
    name: str,
    retry: Annotated[bool, typer.Option("--retry", help="Run the failed action again.")] = False,
    undo: Annotated[
        bool,
        typer.Option("--undo", help="Back to the last good state: stopped, its files where its lease is."),
    ] = False,
    ignore: Annotated[
        bool,
        typer.Option(
            "--ignore",
            help="A failed VM: accept what the agents report (unknown if its host is down). "
            "Any other VM: accept its unsupported cluster configuration as it is.",
        ),
    ] = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Get a failed VM out of its failure (possible while its host is down); without an
    option, refresh the VM's cluster and judge its configuration again."""
    chosen = [word for word, flag in (("retry", retry), ("undo", undo), ("ignore", ignore)) if flag]
    if len(chosen) > 1:
        raise typer.BadParameter("give at most one of --retry, --undo or --ignore")
    repair = _REPAIRS[chosen[0] if chosen else "refresh"]
    manager = client(ctx)
    response = manager.repair_vm(name, repair.action)
    job = wait_for_job(manager, response.job, output)
    if output is OutputFormat.json and job.state == manager_pb2.JOB_STATE_COMPLETED:
        render.print_json(render.vm_dict(manager.get_vm(name)))
        return
    finish(job, output, job.message or f"VM {name} {repair.done}")


# --- host shutdown --------------------------------------------------------------------


class ShutdownAction(enum.StrEnum):
    save = "save"
    shutdown = "shutdown"
    live = "live"


def shutdown_host(
    ctx: typer.Context,
    host: str,
    action: Annotated[
        ShutdownAction,
        typer.Option(
            "--action",
            case_sensitive=False,
            help="What happens to its running highly available VMs: saved and restored on other "
            "nodes (save, the default), shut down and started elsewhere (shutdown), or "
            "live-migrated where the profile allows (live).",
        ),
    ] = ShutdownAction.save,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Shut a host down gracefully: its VMs leave first, then its agent stops (`stopped`)."""
    manager = client(ctx)
    job = manager.shutdown_host(
        host, manager_pb2.ShutdownAction.Value(f"SHUTDOWN_ACTION_{action.value.upper()}")
    )
    job = wait_for_job(manager, job, output)
    finish(job, output, job.message or f"Host {host} is stopped")


def register_ha_commands(vm_app: typer.Typer, host_app: typer.Typer) -> None:
    vm_app.command("repair")(repair_vm)
    host_app.command("shutdown")(shutdown_host)


def confirm_make_ha(vm: str, host: str, cluster: str, refused: str) -> bool:
    """VMM's question when a VM that is not highly available goes to a cluster node: yes
    makes it so; no ends the command with `refused` (what did not happen)."""
    if typer.confirm(
        f"Host {host} is a node of cluster {cluster}, where a VM must be highly available. "
        f"Make VM {vm} highly available?",
        default=True,
    ):
        return True
    raise CliError(f"{refused}: a VM on a cluster node must be highly available")

"""`havm vm migrate`, `havm vm migrate-storage` and `havm migration ...`: move VMs, watch them move.

A migration outlives the call that starts it: the manager runs it as a job and keeps its
measured figures (pre-copy pass, bytes, MB/s, blackout) in a Migration record. These
commands start one and poll that record to its end, so that people watch the passes
converge on a progress bar and scripts get the final figures as JSON. The manager may
restart in the middle (it finds its migrations again), so a follower waits for it to
come back instead of giving up at the first refused call.
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Callable
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn, TimeElapsedColumn

from havm.cli import render
from havm.cli.client import ManagerClient
from havm.cli.errors import CliError, HostUnavailable, ManagerTimeout, ManagerUnreachable, MigrationFailed
from havm.cli.ha import confirm_make_ha
from havm.cli.options import INT32_MAX, OutputFormat, OutputOption, client
from havm.v1 import common_pb2, manager_pb2

FINISHED = (manager_pb2.MIGRATION_STATE_COMPLETED, manager_pb2.MIGRATION_STATE_FAILED)
ARROW = "\N{RIGHTWARDS ARROW}"


class TransferChoice(enum.StrEnum):
    auto = "auto"
    san = "san"
    network = "network"


_TRANSFERS = {
    TransferChoice.auto: manager_pb2.TRANSFER_AUTO,
    TransferChoice.san: manager_pb2.TRANSFER_SAN,
    TransferChoice.network: manager_pb2.TRANSFER_NETWORK,
}
_TRANSFER_KINDS = {
    manager_pb2.MIGRATION_KIND_SAN_TRANSFER: "SAN transfer",
    manager_pb2.MIGRATION_KIND_NETWORK_TRANSFER: "network transfer",
}


class NoConverge(enum.StrEnum):
    quick = "quick"
    fail = "fail"


_NO_CONVERGE_POLICIES = {
    NoConverge.quick: manager_pb2.NO_CONVERGE_POLICY_QUICK,
    NoConverge.fail: manager_pb2.NO_CONVERGE_POLICY_FAIL,
}
_STORAGE_KINDS = {prefix: kind for kind, prefix in render.STORAGE_PREFIXES.items()}
_STORAGE_NOUNS = {
    common_pb2.STORAGE_KIND_LOCAL_DISK: "local disk",
    common_pb2.STORAGE_KIND_CSV: "CSV volume",
    common_pb2.STORAGE_KIND_LUN: "LUN",
}

migration_app = typer.Typer(help="Follow the manager's migrations.", no_args_is_help=True)

DetachOption = Annotated[
    bool,
    typer.Option("--detach", help="Return once the manager has accepted it (queued or running)."),
]


TransferOption = Annotated[
    TransferChoice,
    typer.Option(
        "--transfer",
        case_sensitive=False,
        help="Across the cluster boundary (the VM stopped or saved): by SAN (the LUN's ownership "
        "moves, no bytes copied), over the network (the files are copied), or auto: SAN where the "
        "LUN allows it, else network.",
    ),
]
MakeHaOption = Annotated[
    bool,
    typer.Option(
        "--make-ha",
        help="Moving a VM that is not highly available onto a cluster node: make it highly "
        "available (asked on a terminal).",
    ),
]
StorageOption = Annotated[
    str | None,
    typer.Option(
        "--storage",
        metavar="[KIND:]NAME",
        help="Network transfer: the destination's local disk, CSV volume or LUN for the files "
        "(default: as placement chooses).",
    ),
]


def transfer_to_proto(choice: TransferChoice) -> manager_pb2.Transfer:
    return _TRANSFERS[choice]


def register_migration_commands(app: typer.Typer, vm_app: typer.Typer) -> None:
    app.add_typer(migration_app, name="migration")
    vm_app.command("migrate")(migrate_vm)
    vm_app.command("migrate-storage")(migrate_vm_storage)


# Starting a migration.


def migrate_vm(
    ctx: typer.Context,
    name: str,
    to: Annotated[str, typer.Option("--to", metavar="HOST", help="The destination host.")],
    quick: Annotated[
        bool,
        typer.Option("--quick", help="Quick migration (save, move, restore) even where live is offered."),
    ] = False,
    if_no_converge: Annotated[
        NoConverge | None,
        typer.Option(
            "--if-no-converge",
            case_sensitive=False,
            help="When the guest dirties memory faster than it can be sent: fall back to a quick "
            "migration, or fail and leave the VM running where it is (default: the manager's setting).",
        ),
    ] = None,
    transfer: TransferOption = TransferChoice.auto,
    make_ha: MakeHaOption = False,
    storage: StorageOption = None,
    detach: DetachOption = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Move a VM to another host: live where its cluster offers it, quick otherwise; across
    the cluster boundary, a stopped or saved VM by SAN or network transfer."""
    request = manager_pb2.MigrateVmRequest(
        name=name, host=to, quick=quick, transfer=_TRANSFERS[transfer], make_ha=make_ha
    )
    if if_no_converge is not None:
        request.no_converge = _NO_CONVERGE_POLICIES[if_no_converge]
    manager = client(ctx)
    answer_placement(manager, request, storage, output)
    reply = manager.migrate_vm(request)
    follow_and_report(manager, reply.job, reply.migration, detach, output)


def migrate_vm_storage(
    ctx: typer.Context,
    name: str,
    to: Annotated[
        str,
        typer.Option(
            "--to",
            metavar="HOST[:PATH]",
            help="PATH is a local disk, CSV volume or LUN of HOST (KIND:NAME when names clash); "
            "HOST alone moves the VM to another host and lets the manager choose the storage.",
        ),
    ],
    detach: DetachOption = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Move a running VM's files to other storage, of its own host or another one."""
    manager = client(ctx)
    host, path = _split_target(to)
    request = manager_pb2.MigrateVmStorageRequest(name=name, host=host)
    if path:
        request.storage.CopyFrom(resolve_storage(manager.get_host(host), path))
    elif manager.get_vm(name).host == host:
        raise CliError(
            f"VM {name} is already on {host}: name the local disk, CSV volume or LUN to move "
            f"its files to (--to {host}:NAME)"
        )
    reply = manager.migrate_vm_storage(request)
    follow_and_report(manager, reply.job, reply.migration, detach, output)


def answer_placement(
    manager: ManagerClient,
    request: manager_pb2.MigrateVmRequest | manager_pb2.DeployVmRequest,
    storage: str | None,
    output: OutputFormat,
) -> None:
    """What placement asks of a VM going to `request.host`: the storage `--storage` names
    there, and (on a terminal, without --make-ha) whether to make it highly available."""
    if storage:
        request.storage.CopyFrom(resolve_storage(manager.get_host(request.host), storage))
    if not request.make_ha and output is OutputFormat.table and sys.stdin.isatty():
        request.make_ha = ask_make_ha(manager, request.name, request.host)


def ask_make_ha(manager: ManagerClient, vm: str, host: str) -> bool:
    """VMM's question during placement: a VM that is not highly available going to a
    cluster node is made so, or stays where it is. False when there is nothing to ask."""
    destination = manager.get_host(host)
    if not destination.cluster or manager.get_vm(vm).highly_available:
        return False
    return confirm_make_ha(vm, host, destination.cluster, f"VM {vm} stays where it is")


def _split_target(text: str) -> tuple[str, str]:
    host, sep, path = text.partition(":")
    if not host or (sep and not path):
        raise typer.BadParameter(
            f"{text!r} is not HOST or HOST:PATH (e.g. node2, node1:Volume2, node1:C)", param_hint="'--to'"
        )
    return host, path


def resolve_storage(host: manager_pb2.Host, path: str) -> common_pb2.StorageLocation:
    """The disk or shared volume of `host` that `path` names ("Volume2", or "csv:Volume2").

    A bare name is looked up among the host's local disks and the CSVs and LUNs it sees,
    exactly first, then ignoring case, as Windows names are.
    """
    wanted_kind: common_pb2.StorageKind | None = None
    prefix, sep, rest = path.partition(":")
    if sep and prefix.lower() in _STORAGE_KINDS:
        wanted_kind, path = _STORAGE_KINDS[prefix.lower()], rest
    candidates = [(common_pb2.STORAGE_KIND_LOCAL_DISK, d.name) for d in host.disks]
    candidates += [(v.kind, v.name) for v in host.volumes]
    if wanted_kind is not None:
        candidates = [(kind, name) for kind, name in candidates if kind == wanted_kind]
    found = [(kind, name) for kind, name in candidates if name == path] or [
        (kind, name) for kind, name in candidates if name.lower() == path.lower()
    ]
    if not found:
        what = _STORAGE_NOUNS[wanted_kind] if wanted_kind is not None else "local disk, CSV volume or LUN"
        known = ", ".join(f"{_STORAGE_NOUNS.get(kind, 'volume')} {name}" for kind, name in candidates)
        raise CliError(f"host {host.name} has no {what} named {path} (it has: {known or 'none'})")
    if len(found) > 1:
        spelled = " or ".join(f"{render.STORAGE_PREFIXES.get(kind, '?')}:{name}" for kind, name in found)
        raise CliError(f"{path} names more than one storage location of host {host.name}: write {spelled}")
    kind, name = found[0]
    return common_pb2.StorageLocation(kind=kind, name=name)


def follow_and_report(
    manager: ManagerClient,
    job: manager_pb2.Job,
    migration: manager_pb2.Migration,
    detach: bool,
    output: OutputFormat,
    headline: Callable[[render.Row], str] | None = None,
) -> None:
    """Follow the migration the manager started to its end and report it; `headline`
    says what a completed one did, in place of "VM X moved A -> B"."""
    if not migration.id and job.id:
        migration = _migration_of_job(manager, job.id) or migration
    if not migration.id:
        raise CliError(
            f"the manager started job {job.id or '?'} but reported no migration; "
            f"see `havm job watch {job.id}`"
        )
    if not detach:
        migration = follow(manager, migration, output)
    report(migration, output, detached=detach, headline=headline)


def _migration_of_job(manager: ManagerClient, job_id: str) -> manager_pb2.Migration | None:
    return next((m for m in manager.list_migrations() if m.job_id == job_id), None)


# Following a migration.


def follow(
    manager: ManagerClient, migration: manager_pb2.Migration, output: OutputFormat
) -> manager_pb2.Migration:
    """The migration once completed or failed (or as last seen when the wait timed out)."""
    if migration.state in FINISHED:
        return migration
    if output is not OutputFormat.table or not sys.stderr.isatty():
        return _poll(manager, migration, None)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[figures]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        line = bar.add_task(_title(migration), total=100, completed=0, figures=progress_figures(migration))
        return _poll(manager, migration, _BarUpdater(manager, bar, line))


class _BarUpdater:
    """Moves the bar: the job's progress where the manager sets it, else the bytes sent."""

    def __init__(self, manager: ManagerClient, bar: Progress, line: TaskID) -> None:
        self.manager, self.bar, self.line = manager, bar, line

    def __call__(self, migration: manager_pb2.Migration) -> None:
        percent = _byte_percent(migration)
        if migration.job_id:
            try:
                percent = max(percent, self.manager.get_job(migration.job_id).progress)
            except CliError:
                pass  # the bar is a nicety; the migration record is what counts
        self.bar.update(
            self.line, completed=percent, description=_title(migration), figures=progress_figures(migration)
        )

    def manager_silent(self) -> None:
        self.bar.update(self.line, figures="the manager does not answer; waiting for it to come back")


def _poll(
    manager: ManagerClient, migration: manager_pb2.Migration, on_update: _BarUpdater | None
) -> manager_pb2.Migration:
    settings = manager.settings
    started = last_answer = manager.monotonic()
    while migration.state not in FINISHED and manager.monotonic() - started < settings.job_timeout_s:
        manager.sleep(settings.migration_poll_interval_s)
        try:
            migration = manager.get_migration(migration.id)
        # A manager that is coming back may accept the reachability probe right after a
        # refused call, which reads as UNAVAILABLE from a reachable manager: wait for it too.
        except (ManagerUnreachable, ManagerTimeout, HostUnavailable):
            if manager.monotonic() - last_answer > settings.manager_restart_grace_s:
                raise
            if on_update is not None:
                on_update.manager_silent()
            continue
        last_answer = manager.monotonic()
        if on_update is not None:
            on_update(migration)
    return migration


def _byte_percent(migration: manager_pb2.Migration) -> float:
    total = migration.bytes_total or migration.bytes + migration.bytes_remaining
    return 100.0 * migration.bytes / total if total else 0.0


def _title(migration: manager_pb2.Migration) -> str:
    kind = render.enum_word(manager_pb2.MigrationKind, migration.kind, "MIGRATION_KIND_")
    what = _TRANSFER_KINDS.get(migration.kind, f"{kind} migration")
    return f"{what} of {migration.vm} {ARROW} {migration.destination or '?'}"


def progress_figures(migration: manager_pb2.Migration) -> str:
    """ "pre_copy, pass 3, 412 MB/s, 180.0 MB left": what the bar shows beside it."""
    state = render.enum_word(manager_pb2.MigrationState, migration.state, "MIGRATION_STATE_")
    parts = [render.migration_phase(migration) or state]
    if migration.passes:
        parts.append(f"pass {migration.passes}")
    if migration.mb_per_s:
        parts.append(f"{migration.mb_per_s:,.0f} MB/s")
    if migration.bytes_total:
        left = max(0, migration.bytes_total - migration.bytes)
        parts.append(
            f"{render.megabytes(migration.bytes):,.1f} of {render.megabytes(migration.bytes_total):,.1f} MB"
        )
        if migration.mb_per_s:
            parts.append(f"{left / 1e6 / migration.mb_per_s:,.0f} s left")
    elif migration.bytes or migration.bytes_remaining:
        parts.append(f"{render.megabytes(migration.bytes_remaining):,.1f} MB left")
    return ", ".join(parts)


# Reporting.


def report(
    migration: manager_pb2.Migration,
    output: OutputFormat,
    detached: bool,
    headline: Callable[[render.Row], str] | None = None,
) -> None:
    """Print the migration; a failed (or unfinished, unless detached) one raises afterwards."""
    row = render.migration_dict(migration)
    failed = migration.state == manager_pb2.MIGRATION_STATE_FAILED
    finished = migration.state in FINISHED
    if output is OutputFormat.json:
        render.print_json(row)
    elif detached:
        print(
            f"migration {row['id']} of VM {row['vm']} {row['source'] or '-'} {ARROW} "
            f"{row['destination'] or '-'}: {row['state']}; follow it with `havm migration watch {row['id']}`"
        )
    elif finished and not failed:
        lines = summary_lines(row)
        if headline is not None:
            lines[0] = headline(row)
        print("\n".join(lines))
    if failed:
        raise MigrationFailed(row["error"] or f"migration {row['id']} of VM {row['vm']} failed")
    if not finished and not detached:
        raise MigrationFailed(
            f"migration {row['id']} of VM {row['vm']} has not finished; "
            f"see `havm migration watch {row['id']}`"
        )


def summary_lines(row: render.Row) -> list[str]:
    """What a completed migration did, and its measured figures."""
    vm, source, destination = row["vm"], row["source"] or "-", row["destination"] or "-"
    if row["kind"] in ("san_transfer", "network_transfer"):
        return _transfer_lines(row)
    if row["kind"] == "storage":
        storage = row["storage"]
        where = f"{destination} {storage['kind']}:{storage['name']}" if storage else destination
        moved = f"VM {vm} storage-migrated {source} {ARROW} {where}"
    elif row["fell_back_to_quick"]:
        moved = (
            f"VM {vm} moved {source} {ARROW} {destination}: "
            "live migration did not converge, fell back to quick migration"
        )
    else:
        moved = f"VM {vm} {row['kind']}-migrated {source} {ARROW} {destination}"
    passes = row["passes"]
    # A quick migration copies nothing host to host and makes no passes: no zeros to show.
    figures = [
        f"{render.megabytes(row['bytes']):,.1f} MB sent" if row["bytes"] else "",
        f"{passes} pass{'' if passes == 1 else 'es'}" if passes else "",
        f"{row['mb_per_s']:,.0f} MB/s" if row["mb_per_s"] else "",
        f"duration {row['duration_ms'] / 1000:.2f} s",
        f"blackout {row['blackout_ms']:,} ms",
    ]
    measured = f"{row['kind']} migration {row['id']}: {', '.join(f for f in figures if f)}"
    return [moved, measured]


def transfer_label(row: render.Row) -> str:
    return "SAN transfer" if row["kind"] == "san_transfer" else "network transfer"


def _transfer_lines(row: render.Row) -> list[str]:
    how = transfer_label(row)
    ha = "highly available" if row["highly_available_after"] else "not highly available"
    moved = f"VM {row['vm']} moved {row['source']} {ARROW} {row['destination']} by {how}; now {ha}"
    if row["kind"] == "san_transfer":
        storage = row["storage"] or {"name": "?"}
        figures = [f"LUN {storage['name']} changed owner, no file bytes copied"]
    elif render.megabytes(row["bytes"]) >= 0.1:
        figures = [f"{render.megabytes(row['bytes']):,.1f} MB copied", f"{row['mb_per_s']:,.0f} MB/s"]
    else:  # a VM that never wrote much: the bytes themselves, no rate worth showing
        figures = [f"{row['bytes']:,} bytes copied"]
    figures.append(f"duration {row['duration_ms'] / 1000:.2f} s")
    return [moved, f"{how} {row['id']}: {', '.join(figures)}"]


# havm migration ...


@migration_app.command("list")
def list_migrations(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", min=1, max=INT32_MAX, help="How many, newest first.")] = 50,
    output: OutputOption = OutputFormat.table,
) -> None:
    """List migrations, newest first, with their measured figures."""
    rows = [render.migration_dict(m) for m in client(ctx).list_migrations(limit)]
    if output is OutputFormat.json:
        render.print_json(rows)
    else:
        render.print_table(None, [render.migration_table_row(r) for r in rows], render.MIGRATION_COLUMNS)


@migration_app.command("show")
def show_migration(
    ctx: typer.Context,
    migration_id: Annotated[str, typer.Argument(metavar="ID")],
    output: OutputOption = OutputFormat.table,
) -> None:
    """Show one migration."""
    row = render.migration_dict(client(ctx).get_migration(migration_id))
    if output is OutputFormat.json:
        render.print_json(row)
    else:
        render.print_object(f"migration {migration_id}", row, render.DETAIL_FORMATTERS)


@migration_app.command("watch")
def watch_migration(
    ctx: typer.Context,
    migration_id: Annotated[str, typer.Argument(metavar="ID")],
    output: OutputOption = OutputFormat.table,
) -> None:
    """Follow a migration to its end; exits 1 if it failed."""
    manager = client(ctx)
    report(follow(manager, manager.get_migration(migration_id), output), output, detached=False)

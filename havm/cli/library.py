"""`havm vm store`, `havm vm deploy` and `havm library list`: VMM's library of VMs at rest.

A library server is a host of the `library` profile: an agent that keeps stopped and
saved VMs on its library share (a local disk of its own, MSSCVMMLibrary by default) or
on a SAN LUN zoned to it, and runs none. Storing a VM is a transfer onto it, deploying
one a transfer off it: by SAN where the LUN allows, over the network otherwise, with
the same progress and figures as `vm migrate`.
"""

from __future__ import annotations

from typing import Annotated

import typer

from havm.cli import render
from havm.cli.migration import (
    ARROW,
    DetachOption,
    MakeHaOption,
    StorageOption,
    TransferChoice,
    TransferOption,
    answer_placement,
    follow_and_report,
    transfer_label,
    transfer_to_proto,
)
from havm.cli.options import OutputFormat, OutputOption, client
from havm.v1 import manager_pb2

library_app = typer.Typer(help="The VM library: VMs stored at rest on library servers.", no_args_is_help=True)

LIBRARY_COLUMNS = {
    "name": "NAME",
    "library": "LIBRARY SERVER",
    "storage": "SHARE / LUN",
    "state": "STATE",
    "memory_mb": "MEMORY MB",
    "cpus": "CPUS",
    "disk_gb": "DISK GB",
}
SHARE_COLUMNS = {"library": "LIBRARY SERVER", "share": "SHARE", "capacity_gb": "GB", "free_gb": "GB FREE"}
GIB = 1024**3


def register_library_commands(app: typer.Typer, vm_app: typer.Typer) -> None:
    app.add_typer(library_app, name="library")
    vm_app.command("store")(store_vm)
    vm_app.command("deploy")(deploy_vm)


def store_vm(
    ctx: typer.Context,
    name: str,
    library: Annotated[
        str,
        typer.Option("--library", metavar="SERVER", help="The library server (default: the only one)."),
    ] = "",
    transfer: TransferOption = TransferChoice.auto,
    detach: DetachOption = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Store a stopped or saved VM in the library: it leaves its host (and its cluster) by
    SAN transfer where the library server sees its LUN, over the network otherwise."""
    manager = client(ctx)
    request = manager_pb2.StoreVmRequest(name=name, library=library, transfer=transfer_to_proto(transfer))
    reply = manager.store_vm(request)
    follow_and_report(manager, reply.job, reply.migration, detach, output, _stored)


def deploy_vm(
    ctx: typer.Context,
    name: str,
    to: Annotated[str, typer.Option("--to", metavar="HOST", help="The host the VM goes to.")],
    transfer: TransferOption = TransferChoice.auto,
    make_ha: MakeHaOption = False,
    storage: StorageOption = None,
    detach: DetachOption = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Deploy a VM from the library onto a host, stopped or saved as it was stored: by SAN
    where the host sees its LUN, over the network otherwise."""
    manager = client(ctx)
    request = manager_pb2.DeployVmRequest(
        name=name, host=to, transfer=transfer_to_proto(transfer), make_ha=make_ha
    )
    answer_placement(manager, request, storage, output)
    reply = manager.deploy_vm(request)
    follow_and_report(manager, reply.job, reply.migration, detach, output, _deployed)


def _stored(row: render.Row) -> str:
    return (
        f"VM {row['vm']} stored in library server {row['destination']} (from {row['source']}) "
        f"by {transfer_label(row)}"
    )


def _deployed(row: render.Row) -> str:
    ha = "highly available" if row["highly_available_after"] else "not highly available"
    return (
        f"VM {row['vm']} deployed from library server {row['source']} {ARROW} {row['destination']} "
        f"by {transfer_label(row)}; now {ha}"
    )


@library_app.command("list")
def list_library(ctx: typer.Context, output: OutputOption = OutputFormat.table) -> None:
    """The VMs stored in the library, server by server, and the room on its shares."""
    manager = client(ctx)
    servers = [h for h in manager.list_hosts() if h.capabilities.library_server]
    rows = []
    for server in servers:
        for vm in manager.list_vms(server.name):
            row = render.vm_dict(vm)
            rows.append(
                {
                    "name": row["name"],
                    "id": row["id"],
                    "library": server.name,
                    "storage": row["storage"],
                    "path": row["path"],
                    "state": row["state"],
                    "memory_mb": row["memory_mb"],
                    "cpus": row["cpus"],
                    "disk_gb": row["disk_gb"],
                    "networks": row["networks"],
                }
            )
    if output is OutputFormat.json:
        render.print_json(rows)
        return
    if not servers:
        render.stdout().print("No library server: add a host with `profile: library` to the topology.")
        return
    shares = [
        {
            "library": server.name,
            "share": disk.name,
            "capacity_gb": disk.capacity_bytes // GIB,
            "free_gb": disk.free_bytes // GIB,
        }
        for server in servers
        for disk in server.disks
    ]
    render.print_table("Library shares", shares, SHARE_COLUMNS)
    render.print_table("Stored VMs", rows, LIBRARY_COLUMNS)

"""`havm host cluster-resource add|remove`: resources an administrator adds to a highly
available VM's cluster group on its host (Failover Cluster Manager's "Add a resource").

Like the other commands run on a host itself (havm.cli.host_changes), they call the
host's agent directly; the manager sees the change at its next refresh, and under VMM
2008 judges the VM's group (`extra_cluster_resources`).
"""

from __future__ import annotations

from typing import Annotated

import typer

from havm.cli import render
from havm.cli.host_changes import HostArgument, cluster_resource_rows, host_agent
from havm.cli.options import OutputFormat, OutputOption
from havm.v1 import common_pb2

resource_app = typer.Typer(
    help="Add or remove resources of a highly available VM's cluster group on its host "
    "(the manager sees it at its next refresh).",
    no_args_is_help=True,
)
VmArgument = Annotated[str, typer.Argument(metavar="VM", help="The VM, by the name its host knows it by.")]
RESOURCE_COLUMNS = {"name": "NAME", "type": "TYPE"}


def _print_resources(sentence: str, host: str, vm: common_pb2.VmRuntime, output: OutputFormat) -> None:
    resources = cluster_resource_rows(vm)
    if output is OutputFormat.json:
        render.print_json(
            {"host": host, "vm": vm.spec.name, "vm_id": vm.spec.id, "cluster_resources": resources}
        )
        return
    print(sentence)
    render.print_table(
        f"resources added to the cluster group of VM {vm.spec.name}", resources, RESOURCE_COLUMNS
    )


@resource_app.command("add")
def add_resource(
    ctx: typer.Context,
    host: HostArgument,
    vm: VmArgument,
    name: Annotated[str, typer.Argument(help="The resource's name; names are compared ignoring case.")],
    type_: Annotated[
        str, typer.Option("--type", metavar="TYPE", help="The resource type, e.g. 'Generic Service'.")
    ],
    output: OutputOption = OutputFormat.table,
) -> None:
    """Add a resource to a highly available VM's cluster group; it moves with the VM."""
    with host_agent(ctx, host) as agent:
        found = agent.vm_named(vm)
        changed = agent.add_cluster_resource(found.spec.id, common_pb2.ClusterResource(name=name, type=type_))
    _print_resources(
        f"resource {name} ({type_}) added to the cluster group of VM {vm} on host {host}",
        host,
        changed,
        output,
    )


@resource_app.command("remove")
def remove_resource(
    ctx: typer.Context,
    host: HostArgument,
    vm: VmArgument,
    name: Annotated[str, typer.Argument(help="The resource an administrator added.")],
    output: OutputOption = OutputFormat.table,
) -> None:
    """Remove a resource an administrator added to a VM's cluster group."""
    with host_agent(ctx, host) as agent:
        found = agent.vm_named(vm)
        changed = agent.remove_cluster_resource(found.spec.id, name)
    _print_resources(
        f"resource {name} removed from the cluster group of VM {vm} on host {host}", host, changed, output
    )


def register_host_cluster_resource_commands(host_app: typer.Typer) -> None:
    host_app.add_typer(resource_app, name="cluster-resource")

"""Commands for what makes a VM's cluster configuration supported or not: its
pass-through disks and ISO image, and the cluster's groups.

`vm attach-disk --passthrough` and `vm attach-iso` change the VM through the manager
(which asks its host), so the manager judges the VM again at once; `cluster groups`
shows each highly available VM's group, its owner and where each disk is online.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer

from havm.cli import render, render_config
from havm.cli.jobs import finish, wait_for_job
from havm.cli.options import OutputFormat, OutputOption, client
from havm.cli.vm import parse_storage, vm_after_job
from havm.v1 import common_pb2, manager_pb2

PassthroughOption = Annotated[
    list[str],
    typer.Option(
        "--passthrough",
        metavar="lun:NAME|local:NAME",
        help="A LUN or a local disk of the VM's host, handed to the guest whole (repeatable).",
    ),
]


def _disks(texts: list[str], param_hint: str = "'--passthrough'") -> list[common_pb2.StorageLocation]:
    disks = []
    for text in texts:
        disk = parse_storage(text)
        assert disk is not None
        if disk.kind == common_pb2.STORAGE_KIND_CSV:
            raise typer.BadParameter(
                f"{text!r}: a CSV volume is not a disk to pass through; give lun:NAME or local:NAME",
                param_hint=param_hint,
            )
        disks.append(disk)
    return disks


def _change(
    ctx: typer.Context, name: str, request: manager_pb2.UpdateVmRequest, output: OutputFormat
) -> None:
    manager = client(ctx)
    response = manager.update_vm(request)
    vm = vm_after_job(manager, response.job, name, output)
    if vm is None:
        return
    row = render.vm_dict(vm)
    print(
        f"VM {name}: pass-through disks {', '.join(row['passthrough_disks']) or 'none'}; "
        f"ISO image {row['iso_image'] or 'none'}"
    )
    if row["status"] != "ok":
        reasons = "; ".join(r["detail"] for r in row["status_reasons"] if r not in row["ignored_reasons"])
        print(f"VM {name} is in an unsupported cluster configuration: {reasons}")


def _passthrough_command(field: str, help_text: str) -> Callable[..., None]:
    """`vm attach-disk` or `vm detach-disk`: the same options, one request field apart."""

    def command(
        ctx: typer.Context,
        name: str,
        passthrough: PassthroughOption,
        output: OutputOption = OutputFormat.table,
    ) -> None:
        if not passthrough:
            raise typer.BadParameter("give at least one --passthrough lun:NAME or local:NAME")
        request = manager_pb2.UpdateVmRequest(name=name)
        getattr(request, field).extend(_disks(passthrough))
        _change(ctx, name, request, output)

    command.__doc__ = help_text
    return command


def convert_disk(
    ctx: typer.Context,
    name: str,
    disk: Annotated[
        str, typer.Argument(metavar="lun:NAME|local:NAME", help="One of the VM's pass-through disks.")
    ],
    output: OutputOption = OutputFormat.table,
) -> None:
    """Convert a stopped VM's pass-through disk into a virtual disk on the VM's storage (its
    blocks copied, with a progress bar); the VM then moves as any VM of virtual disks."""
    (location,) = _disks([disk], "'DISK'")
    manager = client(ctx)
    job = wait_for_job(manager, manager.convert_disk(name, location), output)
    finish(job, output, job.message)


def attach_iso(ctx: typer.Context, name: str, image: str, output: OutputOption = OutputFormat.table) -> None:
    """Put an ISO image in a VM's DVD drive (in any state)."""
    if not image.strip():
        raise typer.BadParameter("the image's path is empty", param_hint="'IMAGE'")
    _change(ctx, name, manager_pb2.UpdateVmRequest(name=name, iso_image=image), output)


def detach_iso(ctx: typer.Context, name: str, output: OutputOption = OutputFormat.table) -> None:
    """Eject the ISO image from a VM's DVD drive."""
    _change(ctx, name, manager_pb2.UpdateVmRequest(name=name, iso_image=""), output)


def cluster_groups(ctx: typer.Context, name: str, output: OutputOption = OutputFormat.table) -> None:
    """Each highly available VM's cluster group: its owner node and its resources."""
    rows = [render_config.cluster_group_dict(g) for g in client(ctx).list_cluster_groups(name)]
    if output is OutputFormat.json:
        render.print_json(rows)
        return
    for row in rows:
        render.print_object(row["name"], row, render.DETAIL_FORMATTERS)
    if not rows:
        print(f"cluster {name} has no highly available VM: no groups")


def register_cluster_config_commands(vm_app: typer.Typer, cluster_app: typer.Typer) -> None:
    vm_app.command("attach-disk")(
        _passthrough_command("attach_passthrough", "Attach pass-through disks to a stopped VM.")
    )
    vm_app.command("detach-disk")(
        _passthrough_command("detach_passthrough", "Detach pass-through disks from a stopped VM.")
    )
    vm_app.command("convert-disk")(convert_disk)
    vm_app.command("attach-iso")(attach_iso)
    vm_app.command("detach-iso")(detach_iso)
    cluster_app.command("groups")(cluster_groups)

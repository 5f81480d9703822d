"""A VM's devices beyond its own virtual disk: disks passed through whole, and its DVD drive.

A pass-through disk is a LUN or a local disk the host takes offline and hands to the
guest as it is. That is what limits it: the host must see it, it must hold no VM files
(the VM's own included), only one VM may have it, and a local one ties the VM to its
host. A CSV is a volume that every node keeps online, never a disk to pass through.
The ISO image in the DVD drive is only a path; it changes in any state.

These rules apply wherever a VM's configuration is set or arrives (creation, UpdateVm,
live migration in, take-over) and in the compatibility check before a move, so they
live here once. Purely computational, no side effects: the app hands in this host's
other VMs and checks the files on the disks itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

from node_agent.core.cluster_group import check_cluster_resources
from node_agent.core.config import HostConfig, VolumeKind
from node_agent.core.errors import AgentError, FailedPrecondition, InvalidArgument
from node_agent.core.power import PowerState
from node_agent.core.vm import StorageKind, StorageRef, VmSpec, check_storage_visible

# Windows' MAX_PATH: the longest path Hyper-V's DVD drive takes.
MAX_ISO_PATH = 260


@dataclass(frozen=True)
class VmUpdate:
    """What UpdateVm changes; None leaves a setting as it is."""

    processor_compatibility: bool | None = None
    # Empty ejects the image.
    iso_image: str | None = None
    # The whole new list (empty detaches them all).
    passthrough_disks: tuple[StorageRef, ...] | None = None


def _what(disk: StorageRef) -> str:
    return f"{disk.kind.label} {disk.name}"


def check_iso_image(path: str, field: str = "spec.iso_image") -> None:
    """An ISO image's path: empty (no image), or a path of at most MAX_ISO_PATH characters."""
    if len(path) > MAX_ISO_PATH:
        raise InvalidArgument(f"{field}: the path has {len(path)} characters; at most {MAX_ISO_PATH}")
    if path and not path.strip():
        raise InvalidArgument(f"{field}: must be the path of an ISO image, or empty to eject it")
    if any(ord(c) < 32 for c in path):
        raise InvalidArgument(f"{field}: the path must not contain control characters")


def passed_through_by(disk: StorageRef, vm_id: str, others: Iterable[VmSpec]) -> VmSpec | None:
    """The VM other than `vm_id` that has `disk` passed through, if any."""
    return next((o for o in others if o.id != vm_id and disk in o.passthrough_disks), None)


def check_passthrough_disks(
    spec: VmSpec, host: HostConfig, others: Iterable[VmSpec], field: str = "spec.passthrough_disks"
) -> None:
    """The VM's pass-through disks against this host and its other VMs (`others`).

    The files on each disk are the app's to check (`check_no_files_on`).
    """
    others = list(others)
    seen: set[StorageRef] = set()
    for i, disk in enumerate(spec.passthrough_disks):
        at = f"{field}[{i}]"
        if disk.kind is StorageKind.CSV:
            raise InvalidArgument(
                f"{at}: CSV volume {disk.name} is a volume, not a disk to pass through; "
                "pass through a LUN or a local disk"
            )
        if not disk.name:
            raise InvalidArgument(f"{at}.name: must name a LUN or a local disk")
        if disk in seen:
            raise InvalidArgument(f"{at}: {_what(disk)} is listed twice")
        seen.add(disk)
        if disk == spec.storage:
            raise InvalidArgument(
                f"{at}: {_what(disk)} holds the files of VM {spec.label} itself; "
                "it cannot also be passed through to its guest"
            )
        try:
            check_storage_visible(disk, host)
        except AgentError as exc:
            raise FailedPrecondition(f"{at}: {exc.message}") from None
        holder = passed_through_by(disk, spec.id, others)
        if holder is not None:
            raise FailedPrecondition(
                f"{at}: {_what(disk)} is already passed through to VM {holder.label} on host {host.name}"
            )
        held = sorted(o.label for o in others if o.id != spec.id and o.storage == disk)
        if held:
            raise FailedPrecondition(
                f"{at}: {_what(disk)} holds the files of VM {held[0]}; a disk that holds VM files "
                "cannot be passed through"
            )


def check_no_files_on(spec: VmSpec, index: int, vm_ids: Iterable[str], field: str) -> None:
    """Pass-through disk `index` of `spec` must hold no VM's files (`vm_ids`: those it holds)."""
    disk = spec.passthrough_disks[index]
    holders = sorted(i for i in vm_ids if i != spec.id)
    if holders:
        raise FailedPrecondition(
            f"{field}[{index}]: {_what(disk)} holds the files of VM {holders[0]}; a disk that holds "
            "VM files cannot be passed through"
        )


def check_storage_not_passed_through(spec: VmSpec, others: Iterable[VmSpec], host: HostConfig) -> None:
    """The disk or LUN that is to hold the VM's files is no other VM's pass-through disk."""
    holder = passed_through_by(spec.storage, spec.id, others)
    if holder is not None:
        raise FailedPrecondition(
            f"spec.storage: {_what(spec.storage)} is passed through to VM {holder.label} on host "
            f"{host.name}; it cannot hold VM files"
        )


def passthrough_reasons(spec: VmSpec, host: HostConfig, others: Iterable[VmSpec]) -> list[str]:
    """Every reason the VM's pass-through disks keep `host` (another host) from taking it."""
    others = list(others)
    reasons: list[str] = []
    for disk in spec.passthrough_disks:
        if disk.kind is StorageKind.LOCAL_DISK:
            reasons.append(
                f"VM {spec.label} has local disk {disk.name} passed through to its guest: "
                "a VM with a local pass-through disk cannot move to another host"
            )
        elif disk.kind is StorageKind.CSV:
            reasons.append(f"CSV volume {disk.name} is a volume, not a disk to pass through")
        elif host.volume(disk.name, VolumeKind.LUN) is None:
            reasons.append(
                f"host {host.name} cannot see LUN {disk.name}, which is passed through to VM {spec.label}"
            )
        else:
            holder = passed_through_by(disk, spec.id, others)
            if holder is not None:
                reasons.append(
                    f"LUN {disk.name}, passed through to VM {spec.label}, is already passed through to "
                    f"VM {holder.label} on host {host.name}"
                )
    return reasons


def check_can_leave(spec: VmSpec, host_name: str) -> None:
    """A VM with a local pass-through disk is tied to its host (`host_name`)."""
    tied = next((d for d in spec.passthrough_disks if d.kind is StorageKind.LOCAL_DISK), None)
    if tied is not None:
        raise FailedPrecondition(
            f"VM {spec.label} has local disk {tied.name} of host {host_name} passed through to its "
            "guest: a VM with a local pass-through disk cannot move to another host"
        )


def updated_spec(
    spec: VmSpec, state: PowerState, update: VmUpdate, host: HostConfig, others: Iterable[VmSpec]
) -> VmSpec:
    """The VM's configuration after `update`, or why it cannot change now; nothing changes
    unless all of it can. `others`: this host's other VMs."""
    new = spec
    compat = update.processor_compatibility
    if compat is not None and compat != spec.processor_compatibility:
        _check_stopped(spec, state, "processor compatibility mode")
        new = dataclasses.replace(new, processor_compatibility=compat)
    disks = update.passthrough_disks
    if disks is not None and disks != spec.passthrough_disks:
        _check_stopped(spec, state, "pass-through disks")
        new = dataclasses.replace(new, passthrough_disks=disks)
        check_passthrough_disks(new, host, others, "passthrough_disks")
    iso = update.iso_image
    if iso is not None and iso != spec.iso_image:
        check_iso_image(iso, "iso_image")
        new = dataclasses.replace(new, iso_image=iso)
    return new


def _check_stopped(spec: VmSpec, state: PowerState, what: str) -> None:
    if state is not PowerState.STOPPED:
        raise FailedPrecondition(
            f"VM {spec.label} is {state.value}; {what} can be changed only while it is stopped"
        )


def check_on_host(spec: VmSpec, host: HostConfig, others: Iterable[VmSpec]) -> None:
    """What a VM's configuration must satisfy on this host beside `validate_spec`, with
    this host's other VMs (`others`): its DVD drive, its pass-through disks, the disk
    that holds its files, the resources of its cluster group."""
    others = list(others)
    check_iso_image(spec.iso_image)
    check_passthrough_disks(spec, host, others)
    check_storage_not_passed_through(spec, others, host)
    check_cluster_resources(spec)

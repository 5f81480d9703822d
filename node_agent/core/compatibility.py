"""Whether this host could take a VM that moves here, with every reason it could not.

The manager asks before each migration (live, quick or storage) and shows the
reasons to the operator, so the check lists them all instead of stopping at the
first: another processor vendor, missing processor features, too little memory,
a virtual network or port group this host lacks, storage it cannot see, a pass-through
LUN it cannot see or that another of its VMs has, a pass-through local disk (which
never moves).
"""

from __future__ import annotations

from collections.abc import Iterable

from node_agent.core.config import HostConfig
from node_agent.core.cpu import GuestCpu, cpu_reasons
from node_agent.core.errors import AgentError
from node_agent.core.vm import VmSpec, check_storage_visible
from node_agent.core.vm_devices import passed_through_by, passthrough_reasons


def compatibility_reasons(
    spec: VmSpec,
    guest: GuestCpu | None,
    host: HostConfig,
    available_mb: int,
    others: Iterable[VmSpec] = (),
) -> list[str]:
    """Every reason `host` cannot run `spec` (its storage being where the files would be).

    Purely computational. `guest` is the processor the running guest sees, None for
    a VM that is not running (it boots with whatever this host offers).
    `available_mb` is the memory free now, incoming migrations' reservations counted.
    `others`: this host's VMs (arriving ones included), whose pass-through disks are theirs.
    """
    others = list(others)
    reasons: list[str] = []
    # A library server stores the VM and runs it nowhere: what running needs is not asked.
    runs = not host.profile.traits.library_server
    if runs and guest is not None and guest.vendor:
        reasons += cpu_reasons(spec.label, host.name, host.cpu, guest, spec.processor_compatibility)
    if runs and spec.memory_mb > available_mb:
        reasons.append(
            f"not enough memory on host {host.name}: VM {spec.label} needs {spec.memory_mb} MB, "
            f"{max(available_mb, 0)} MB available"
        )
    for net in spec.networks:
        if runs and host.network(net) is None:
            reasons.append(
                f"host {host.name} has no {host.profile.network_term} named {net!r}, "
                f"which VM {spec.label} is connected to"
            )
    try:
        check_storage_visible(spec.storage, host)
    except AgentError as exc:
        reasons.append(exc.message)
    holder = passed_through_by(spec.storage, spec.id, others)
    if holder is not None:
        reasons.append(
            f"{spec.storage.kind.label} {spec.storage.name}, which holds the files of VM {spec.label}, "
            f"is passed through to VM {holder.label} on host {host.name}"
        )
    reasons += passthrough_reasons(spec, host, others)
    return reasons

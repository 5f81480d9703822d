"""Whether this host could take a VM that moves here, with every reason it could not.

The manager asks before each migration (live, quick or storage) and shows the
reasons to the operator, so the check lists them all instead of stopping at the
first: another processor vendor, missing processor features, too little memory,
a virtual network or port group this host lacks, storage it cannot see.
"""

from __future__ import annotations

from node_agent.core.config import HostConfig
from node_agent.core.cpu import GuestCpu, cpu_reasons
from node_agent.core.errors import AgentError
from node_agent.core.vm import VmSpec, check_storage_visible


def compatibility_reasons(
    spec: VmSpec, guest: GuestCpu | None, host: HostConfig, available_mb: int
) -> list[str]:
    """Every reason `host` cannot run `spec` (its storage being where the files would be).

    Purely computational. `guest` is the processor the running guest sees, None for
    a VM that is not running (it boots with whatever this host offers).
    `available_mb` is the memory free now, incoming migrations' reservations counted.
    """
    reasons: list[str] = []
    if guest is not None and guest.vendor:
        reasons += cpu_reasons(spec.label, host.name, host.cpu, guest, spec.processor_compatibility)
    if spec.memory_mb > available_mb:
        reasons.append(
            f"not enough memory on host {host.name}: VM {spec.label} needs {spec.memory_mb} MB, "
            f"{max(available_mb, 0)} MB available"
        )
    for net in spec.networks:
        if host.network(net) is None:
            reasons.append(
                f"host {host.name} has no {host.profile.network_term} named {net!r}, "
                f"which VM {spec.label} is connected to"
            )
    try:
        check_storage_visible(spec.storage, host)
    except AgentError as exc:
        reasons.append(exc.message)
    return reasons

"""The processor a guest sees, and why a VM can or cannot run on another processor.

A guest is started with its host's CPU vendor and feature flags, minus those only the
hypervisor uses. It keeps that processor while it runs, is paused or saved, so a host
that lacks one of those features can neither restore it nor take it by live
migration. Processor compatibility mode (a VM setting, as in Hyper-V 2008 R2) shows
the guest only a baseline of its vendor's features, so that it can move between
processor generations of that vendor.
"""

from __future__ import annotations

from dataclasses import dataclass

from node_agent.core.config import CpuSpec

# Virtualization extensions belong to the hypervisor: a guest never sees them.
HOST_ONLY_FEATURES = frozenset({"vmx", "svm"})

# What processor compatibility mode leaves visible: roughly the SSE3-era set every
# server processor of the vendor has had since 2005 (Core and K8). Newer instructions
# (ssse3, sse4_1, sse4_2, popcnt, aes, avx, ...) are hidden.
COMPATIBILITY_BASELINE: dict[str, frozenset[str]] = {
    "GenuineIntel": frozenset(
        {"fpu", "tsc", "cx8", "cmov", "mmx", "fxsr", "sse", "sse2", "sse3", "cx16", "nx", "lm", "syscall"}
    ),
    "AuthenticAMD": frozenset(
        {"fpu", "tsc", "cx8", "cmov", "mmx", "fxsr", "sse", "sse2", "sse3", "cx16", "nx", "lm", "syscall"}
    ),
}
# A vendor this table does not know gets the features both known vendors share.
_COMMON_BASELINE = frozenset.intersection(*COMPATIBILITY_BASELINE.values())


@dataclass(frozen=True)
class GuestCpu:
    """The processor a running, paused or saved guest was started with."""

    vendor: str
    features: tuple[str, ...]


def guest_cpu(host_cpu: CpuSpec, processor_compatibility: bool) -> GuestCpu:
    """The processor a guest started on this host sees.

    Purely computational. The host's order of features is kept.
    """
    visible = [f for f in host_cpu.features if f not in HOST_ONLY_FEATURES]
    if processor_compatibility:
        baseline = COMPATIBILITY_BASELINE.get(host_cpu.vendor, _COMMON_BASELINE)
        visible = [f for f in visible if f in baseline]
    return GuestCpu(host_cpu.vendor, tuple(dict.fromkeys(visible)))


def cpu_reasons(
    vm_label: str, host_name: str, host_cpu: CpuSpec, guest: GuestCpu, processor_compatibility: bool
) -> list[str]:
    """Why this host's processor cannot run a guest that sees `guest`; empty when it can.

    Purely computational.
    """
    if guest.vendor != host_cpu.vendor:
        return [
            f"the processor of host {host_name} is {host_cpu.vendor}; VM {vm_label} runs on {guest.vendor}, "
            "and no VM can move between processor vendors while it runs"
        ]
    offered = set(host_cpu.features) - HOST_ONLY_FEATURES
    missing = [f for f in guest.features if f not in offered]
    if not missing:
        return []
    hint = ""
    if not processor_compatibility:
        hint = "; processor compatibility mode (set while the VM is off) would hide the newer ones"
    return [f"the processor of host {host_name} lacks {', '.join(missing)}, which VM {vm_label} uses{hint}"]

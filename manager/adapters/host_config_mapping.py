"""AddHost's HostConfig message to the topology's HostSpec, checked field by field.

The message is turned into a host entry of the topology's format and read by the
topology's own parser, so a host added at runtime obeys exactly the rules of one the
topology declares, and a bad field is named the same way (`host.memory_mb: ...`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from havm.contract.fields import TopologyError, name_problem
from havm.contract.hosts import HostSpec
from havm.contract.topology import parse_host_entry
from havm.v1 import common_pb2
from manager.adapters.proto_mapping import PROFILE_FROM_PROTO
from manager.core.errors import InvalidArgumentError

GIB = 1024**3


def host_spec_from_proto(pb: common_pb2.HostConfig) -> HostSpec:
    """Raises InvalidArgumentError naming the first bad field."""
    if pb.profile not in PROFILE_FROM_PROTO:
        raise InvalidArgumentError(
            f"host.profile: must be one of {', '.join(PROFILE_FROM_PROTO.values())}, got {pb.profile}"
        )
    if pb.cluster and (problem := name_problem(pb.cluster)) is not None:
        raise InvalidArgumentError(f"host.cluster: must {problem}")
    entry: dict[str, Any] = {
        "name": pb.name,
        "profile": PROFILE_FROM_PROTO[pb.profile],
        "cpu": {
            "vendor": pb.cpu.vendor,
            "model": pb.cpu.model,
            "features": list(pb.cpu.features),
            "cores": pb.cpu.cores,
            "mhz": pb.cpu.mhz,
        },
        "memory_mb": pb.memory_mb,
        "host_reserve_mb": pb.host_reserve_mb,
        "disks": [
            {"name": d.name, "capacity_gb": _whole_gib(d.capacity_bytes, f"host.disks[{i}].capacity_bytes")}
            for i, d in enumerate(pb.disks)
        ],
        "networks": [{"name": n.name, "bound_to": n.bound_to, "vlan_id": n.vlan_id} for n in pb.networks],
    }
    if pb.address:
        entry["address"] = pb.address
    if pb.migration_address:
        entry["migration_address"] = pb.migration_address
    try:
        spec = parse_host_entry(entry, field="host")
    except TopologyError as error:
        raise InvalidArgumentError(error.message) from None
    return replace(spec, cluster=pb.cluster or None)


def _whole_gib(capacity_bytes: int, field: str) -> int:
    if capacity_bytes < GIB or capacity_bytes % GIB:
        raise InvalidArgumentError(
            f"{field}: must be a whole number of GiB, at least 1, got {capacity_bytes}"
        )
    return capacity_bytes // GIB

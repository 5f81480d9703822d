"""The topology, as the manager reads it: the schema shared through the wire contract.

The topology's schema and rules live in `havm.contract.topology` (pure, beside the
wire contract), because the CLI and the agents' host configurations are written from
the same description; the manager's code keeps importing it from here.
"""

from __future__ import annotations

from havm.contract.fields import NAME_PATTERN, TopologyError
from havm.contract.hosts import CpuSpec, DiskSpec, HostSpec, NetworkSpec, host_defaults_of, host_to_dict
from havm.contract.timing import Timing
from havm.contract.topology import (
    ClusterSpec,
    IsolationSettings,
    MigrationSettings,
    PlacementSettings,
    Topology,
    VolumeSpec,
    parse_host_entry,
    parse_topology,
    topology_to_dict,
    without_host,
)

__all__ = [
    "ClusterSpec",
    "CpuSpec",
    "DiskSpec",
    "HostSpec",
    "IsolationSettings",
    "MigrationSettings",
    "NAME_PATTERN",
    "NetworkSpec",
    "PlacementSettings",
    "Timing",
    "Topology",
    "TopologyError",
    "VolumeSpec",
    "host_defaults_of",
    "host_to_dict",
    "parse_host_entry",
    "parse_topology",
    "topology_to_dict",
    "without_host",
]

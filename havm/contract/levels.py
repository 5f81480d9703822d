"""What the topology must know of VMM levels and host profiles to refuse what cannot be.

The manager and the agent each keep their full table of what a level or a profile can
do (manager.core.levels, manager.core.profiles, node_agent.core.config); a topology is
checked before either runs, so the one trait it needs, whether cluster shared volumes
exist, is here, and tests/test_profile_traits.py holds it equal to theirs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from havm.contract.fields import TopologyError

DEFAULT_VMM_VERSION = "2008r2"
# Whether each level manages cluster shared volumes: VMM 2008 supports one HA VM per LUN.
VMM_VERSION_CSV = {"2008": False, "2008r2": True}
# Whether each profile's clusters have shared volumes every node uses at once: Windows
# Server 2008 failover clusters have no CSV; ESX has VMFS datastores.
PROFILE_CSV = {"hyperv-2008": False, "hyperv-2008r2": True, "esx": True, "library": False}
# Whether a profile's clusters belong to a datacenter, between whose clusters running
# VMs move live: vCenter's datacenters, where VMotion crosses ESX clusters; a Hyper-V
# failover cluster is its own boundary.
PROFILE_DATACENTER = {"hyperv-2008": False, "hyperv-2008r2": False, "esx": True, "library": False}
# Whether hosts of a profile form clusters: a library server stores VMs and runs none,
# so it is never a cluster node.
PROFILE_CLUSTERS = {"hyperv-2008": True, "hyperv-2008r2": True, "esx": True, "library": False}


class _Volume(Protocol):
    @property
    def kind(self) -> str: ...


class _Cluster(Protocol):
    @property
    def profile(self) -> str: ...

    @property
    def volumes(self) -> Sequence[_Volume]: ...


def check_csvs(clusters: Sequence[_Cluster], vmm_version: str) -> None:
    """Refuse a CSV where the cluster's profile or the VMM level has none."""
    for i, cluster in enumerate(clusters):
        if not any(v.kind == "csv" for v in cluster.volumes):
            continue
        if not PROFILE_CSV.get(cluster.profile, False):
            raise TopologyError(
                f"clusters[{i}].csvs",
                f"a {cluster.profile} cluster (Windows Server 2008) has no cluster shared volumes; "
                "give each highly available VM a LUN of its own (luns:)",
            )
        if not VMM_VERSION_CSV[vmm_version]:
            raise TopologyError(
                f"clusters[{i}].csvs",
                f"VMM {vmm_version} does not support cluster shared volumes; "
                "use luns: or vmm_version: 2008r2",
            )

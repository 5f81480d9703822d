"""Who may call which method of an agent.

An agent serves the manager: its orders (inventory, VM lifecycle, migrations, storage
moves, shutdown). An administrator of the cluster (`admin` identity) may act on the
host directly, as one logged on to a Hyper-V or ESX host could: read it, create,
start, stop and delete VMs there, change its networks and volumes; what only the
manager may order (taking a VM over, migrating it, moving its storage) stays the
manager's, as those carry the lease the manager issues. A migration stream is
accepted only from an agent of the same cluster, or of another cluster of its ESX
datacenter (VMotion crosses those). A network transfer's stream is
accepted from any agent of the deployment (its certificate comes from the same CA):
transfers are how a VM crosses the cluster boundary, from a standalone host or another
cluster. Reflection is admin's; health any identity's.
"""

from __future__ import annotations

from havm.contract.identity import PeerIdentity, Role
from havm.v1 import agent_pb2

_AGENT_SERVICE = agent_pb2.DESCRIPTOR.services_by_name["AgentService"].full_name
_HOST_ADMIN_SERVICE = agent_pb2.DESCRIPTOR.services_by_name["HostAdminService"].full_name
HEALTH = "/grpc.health.v1.Health/"
RECEIVE_MIGRATION = "ReceiveMigration"
RECEIVE_VM = "ReceiveVm"
# The orders that carry the manager's lease: never an administrator's.
MANAGER_ONLY = frozenset({"MigrateVm", "MoveVmStorage", "SendVm"})


class AgentAdmission:
    """One agent's havm.contract.grpc_policy.Admission; `cluster` is its host's."""

    def __init__(self, host: str, cluster: str | None, peer_clusters: tuple[str, ...] = ()) -> None:
        self._host = host
        self._cluster = cluster
        # The other clusters of its ESX datacenter, whose nodes VMotion VMs here.
        self._peer_clusters = frozenset(peer_clusters)

    def refusal(self, identity: PeerIdentity | None, method: str) -> str | None:
        if identity is None or method.startswith(HEALTH):
            return None
        service, _, name = method.strip("/").rpartition("/")
        if service == _AGENT_SERVICE and name == RECEIVE_MIGRATION:
            return self._peer_refusal(identity)
        if service == _AGENT_SERVICE and name == RECEIVE_VM:
            if identity.role is not Role.AGENT:
                who = identity.describe()
                return f"host {self._host} takes network transfers only from agents; {who} is not one"
            return None
        if identity.role is Role.ADMIN:
            if service == _AGENT_SERVICE and name in MANAGER_ONLY:
                return f"{name} is ordered by the manager only; {identity.describe()} may not"
            return None
        if identity.role is Role.MANAGER and service == _AGENT_SERVICE:
            return None
        return (
            f"host {self._host} takes {name} only from the manager or an admin identity; "
            f"{identity.describe()} is neither"
        )

    def _peer_refusal(self, identity: PeerIdentity) -> str | None:
        if identity.role is not Role.AGENT:
            who = identity.describe()
            return f"host {self._host} takes migration streams only from agents; {who} is not one"
        if self._cluster is None or (
            identity.cluster != self._cluster and identity.cluster not in self._peer_clusters
        ):
            mine = f"cluster {self._cluster}" if self._cluster else "no cluster (a standalone host)"
            peers = (
                f" or its datacenter ({', '.join(sorted(self._peer_clusters))})"
                if self._peer_clusters
                else ""
            )
            return (
                f"host {self._host} takes migration streams only from nodes of its cluster{peers}; it is in "
                f"{mine}, {identity.describe()} is not"
            )
        return None

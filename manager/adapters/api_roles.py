"""Who may call which method of the manager's API: the roles of the issue's table.

`reader` reads; `operator` also acts on VMs and hosts (create, start, stop, migrate,
maintenance, refresh, repair, shutdown); `admin` also changes the topology (add or
remove hosts, cluster settings) and is the only one served reflection. Any identity
of the cluster may ask the health service. Methods not named here are admin's, so a
method added to the API is closed until it is placed in a role.
"""

from __future__ import annotations

from havm.contract.identity import PeerIdentity, Role
from havm.v1 import manager_pb2

_SERVICE = manager_pb2.DESCRIPTOR.services_by_name["ManagerService"].full_name
HEALTH = "/grpc.health.v1.Health/"

READS = frozenset(
    {
        "GetStatus",
        "ListHosts",
        "GetHost",
        "ListClusters",
        "GetCluster",
        "ListVms",
        "GetVm",
        "ListJobs",
        "GetJob",
        "WatchJob",
        "WatchEvents",
        "ListMigrations",
        "GetMigration",
        "RateHosts",
        "ListClusterGroups",
    }
)
OPERATIONS = frozenset(
    {
        "RefreshCluster",
        "CreateVm",
        "OperateVm",
        "DeleteVm",
        "UpdateVm",
        "ConvertDisk",
        "MigrateVm",
        "MigrateVmStorage",
        "StoreVm",
        "DeployVm",
        "StartMaintenance",
        "StopMaintenance",
        "ShutdownHost",
        "RepairVm",
    }
)
_ALLOWED = {Role.READER: READS, Role.OPERATOR: READS | OPERATIONS}


class ManagerAdmission:
    """The manager's havm.contract.grpc_policy.Admission."""

    def refusal(self, identity: PeerIdentity | None, method: str) -> str | None:
        if identity is None:
            return None  # a plaintext server (--insecure): nobody is known, nobody refused
        if method.startswith(HEALTH):
            return None
        if identity.role is Role.ADMIN:
            return None
        service, _, name = method.strip("/").rpartition("/")
        if identity.role in _ALLOWED and service == _SERVICE and name in _ALLOWED[identity.role]:
            return None
        if identity.role in _ALLOWED:
            needed = "operator or admin" if name in OPERATIONS else "admin"
            return f"{name} needs the {needed} role; the identity {identity.name!r} is {identity.role.value}"
        return f"the manager's API serves clients only; {identity.describe()} is not one"

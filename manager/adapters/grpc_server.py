"""ManagerService over gRPC, with health checking and reflection.

The servicer only translates: proto request -> call on the application -> proto
response. A ManagerError becomes `context.abort(code, sentence)` here, at the edge,
so no bad request ever produces a traceback on the wire.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol, TypeVar, cast

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from havm.contract.grpc_policy import API_SERVER_OPTIONS, CallGuard
from havm.contract.hosts import HostSpec
from havm.contract.identity import IdentityFile
from havm.v1 import manager_pb2, manager_pb2_grpc
from manager.adapters.api_roles import ManagerAdmission
from manager.adapters.host_config_mapping import host_spec_from_proto
from manager.adapters.proto_mapping import (
    cluster_group_to_proto,
    cluster_to_proto,
    event_to_proto,
    host_to_proto,
    job_to_proto,
    migration_to_proto,
    ratings_to_proto,
    vm_to_proto,
    workload_from_proto,
)
from manager.adapters.request_mapping import (
    maintenance_mode_from_proto,
    no_converge_from_proto,
    operation_from_proto,
    policy_from_proto,
    repair_action_from_proto,
    requested_storage_from_proto,
    restart_priority_from_proto,
    settings_change_from_proto,
    shutdown_action_from_proto,
    transfer_from_proto,
)
from manager.core.capacity import ReserveReport
from manager.core.cluster_config import ClusterNetwork
from manager.core.cluster_groups import ClusterGroup
from manager.core.errors import InvalidArgumentError, ManagerError
from manager.core.host_choice import RatingsView, VmShape
from manager.core.maintenance import MaintenanceMode
from manager.core.model import (
    ClusterRecord,
    CreateVmCommand,
    Event,
    FailoverPolicy,
    HostRecord,
    JobRecord,
    MigrationRecord,
    StorageLocation,
    VmOperation,
    VmRecord,
)
from manager.core.operations import SettingsChange
from manager.core.repair import RepairAction
from manager.core.shutdown import ShutdownAction
from manager.core.transfer import Transfer

log = logging.getLogger(__name__)
SERVICE_NAME = manager_pb2.DESCRIPTOR.services_by_name["ManagerService"].full_name

STATUS_CODES: dict[str, grpc.StatusCode] = {code.name: code for code in grpc.StatusCode}


class HostViewLike(Protocol):
    host: HostRecord
    vm_count: int
    rating: float


class StatusLike(Protocol):
    # Read-only: the app answers with a frozen view.
    @property
    def version(self) -> str: ...
    @property
    def vmm_version(self) -> str: ...
    @property
    def hosts_total(self) -> int: ...
    @property
    def hosts_ok(self) -> int: ...
    @property
    def vms_total(self) -> int: ...
    @property
    def vms_running(self) -> int: ...
    @property
    def clusters(self) -> list[ClusterRecord]: ...
    @property
    def jobs_running(self) -> int: ...


class HostAdminLike(Protocol):
    def add(self, spec: HostSpec) -> tuple[JobRecord, HostRecord]: ...
    def remove(self, name: str) -> JobRecord: ...


class ManagerApi(Protocol):
    """What the servicer needs from the application (ManagerApp implements it)."""

    def status(self) -> StatusLike: ...
    def list_hosts(self, cluster: str = "") -> list[Any]: ...
    def get_host(self, name: str) -> Any: ...
    def list_clusters(self) -> list[ClusterRecord]: ...
    def get_cluster(self, name: str) -> ClusterRecord: ...
    def refresh(self, target: str = "") -> JobRecord: ...
    def create_vm(self, command: CreateVmCommand) -> tuple[JobRecord, VmRecord]: ...
    def list_vms(self, host: str = "") -> list[VmRecord]: ...
    def get_vm(self, name: str) -> VmRecord: ...
    def operate_vm(self, name: str, operation: VmOperation | None) -> JobRecord: ...
    def delete_vm(self, name: str) -> JobRecord: ...
    def list_jobs(self, limit: int = 0) -> list[JobRecord]: ...
    def get_job(self, job_id: str) -> JobRecord: ...
    def watch_job(self, job_id: str) -> AsyncIterator[JobRecord]: ...
    def watch_events(self, replay: int, follow: bool = True) -> AsyncIterator[Event]: ...
    def update_vm(
        self, name: str, change: SettingsChange, policy: FailoverPolicy | None = None
    ) -> tuple[JobRecord, VmRecord]: ...
    def convert_disk(self, name: str, disk: StorageLocation | None) -> JobRecord: ...
    async def migrate_vm(
        self,
        name: str,
        host: str,
        quick: bool = False,
        no_converge: str | None = None,
        transfer: Transfer = Transfer.AUTO,
        make_ha: bool = False,
        storage: StorageLocation | None = None,
    ) -> tuple[JobRecord, MigrationRecord]: ...
    async def migrate_vm_storage(
        self, name: str, host: str, storage: StorageLocation | None
    ) -> tuple[JobRecord, MigrationRecord]: ...
    async def store_vm(
        self, name: str, library: str, transfer: Transfer
    ) -> tuple[JobRecord, MigrationRecord]: ...
    async def deploy_vm(
        self, name: str, host: str, transfer: Transfer, make_ha: bool, storage: StorageLocation | None
    ) -> tuple[JobRecord, MigrationRecord]: ...
    def list_migrations(self, limit: int = 0) -> list[MigrationRecord]: ...
    def get_migration(self, migration_id: str) -> MigrationRecord: ...
    def cluster_report(self, cluster: ClusterRecord) -> ReserveReport: ...
    def cluster_networks(self, cluster: ClusterRecord) -> tuple[ClusterNetwork, ...]: ...
    def cluster_groups(self, name: str) -> tuple[ClusterGroup, ...]: ...
    def vm_paths(self, vms: list[VmRecord]) -> dict[str, str]: ...
    def start_maintenance(self, host: str, mode: MaintenanceMode | None) -> JobRecord: ...
    def requested(self, request_id: str) -> AbstractContextManager[None]: ...
    def job_for_request(self, request_id: str) -> JobRecord | None: ...
    def migration_of_job(self, job_id: str) -> MigrationRecord | None: ...
    def find_vm(self, name: str) -> VmRecord | None: ...
    def stop_maintenance(self, host: str) -> JobRecord: ...
    def rate_hosts(self, shape: VmShape) -> RatingsView: ...
    def update_cluster(self, name: str, reserve: int | None) -> tuple[JobRecord, ClusterRecord]: ...
    def failover_threshold(self, vm: VmRecord) -> int: ...
    def repair_vm(self, name: str, action: RepairAction) -> tuple[JobRecord, VmRecord]: ...
    def shutdown_host(self, name: str, action: ShutdownAction) -> JobRecord: ...
    @property
    def host_admin(self) -> HostAdminLike: ...


R = TypeVar("R")


def _status_code(error: ManagerError) -> grpc.StatusCode:
    return STATUS_CODES.get(error.code, grpc.StatusCode.INTERNAL)


def unary(
    method: Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[R]],
) -> Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[R]]:
    """Map ManagerError to the status code it names, with its sentence."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> R:
        try:
            return await method(self, request, context)
        except ManagerError as error:
            await context.abort(_status_code(error), error.message)
            raise AssertionError("unreachable: abort raises") from None
        except grpc.aio.AbortError:
            raise
        except Exception as error:  # a bug: log it here, give the caller a sentence
            log.exception("%s failed", method.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error in the manager: {error}")
            raise AssertionError("unreachable: abort raises") from None

    return wrapper


# The metadata key a client names its request with: the same id sent again (a retry
# after a manager restart) gets the job the first one started, not a second change.
REQUEST_ID_KEY = "havm-request-id"


def _request_id(context: grpc.aio.ServicerContext) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID_KEY:
            text = value if isinstance(value, str) else value.decode(errors="replace")
            try:
                return str(uuid.UUID(text))
            except ValueError:
                raise InvalidArgumentError(f"{REQUEST_ID_KEY}: must be a UUID, got {text[:64]!r}") from None
    return None


def mutation(
    method: Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[R]],
) -> Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[R]]:
    """A call that changes something and answers with the job doing it: with a request
    id, it is done once; the same id again answers with that job."""

    @functools.wraps(method)
    async def wrapper(self: ManagerServicer, request: Any, context: grpc.aio.ServicerContext) -> R:
        request_id = _request_id(context)
        if request_id is None:
            return await method(self, request, context)
        done = self._app.job_for_request(request_id)
        if done is not None:
            log.info("%s: request %s was made before: answered with its job", method.__name__, request_id)
            return cast(R, self._replay(method.__name__, done))
        with self._app.requested(request_id):
            return await method(self, request, context)

    return wrapper


def _host(view: HostViewLike) -> manager_pb2.Host:
    return host_to_proto(view.host, view.vm_count, view.rating)


class ManagerServicer(manager_pb2_grpc.ManagerServiceServicer):
    def __init__(self, app: ManagerApi) -> None:
        self._app = app

    def _vm(self, vm: VmRecord) -> manager_pb2.Vm:
        return self._vms([vm])[0]

    def _replay(self, method: str, job: JobRecord) -> Any:
        """The answer to a request made again: its job, and what the first answer named
        beside it where it still exists (the VM, the migration)."""
        response = getattr(manager_pb2, f"{method}Response")()
        response.job.CopyFrom(job_to_proto(job))
        fields = response.DESCRIPTOR.fields_by_name
        if "vm" in fields:
            vm = self._app.find_vm(job.target)
            if vm is not None:
                response.vm.CopyFrom(self._vm(vm))
        if "migration" in fields:
            migration = self._app.migration_of_job(job.id)
            if migration is not None:
                response.migration.CopyFrom(migration_to_proto(migration))
        return response

    def _vms(self, vms: list[VmRecord]) -> list[manager_pb2.Vm]:
        paths = self._app.vm_paths(vms)
        return [vm_to_proto(vm, self._app.failover_threshold(vm), paths.get(vm.id, "")) for vm in vms]

    def _cluster(self, cluster: ClusterRecord) -> manager_pb2.Cluster:
        return cluster_to_proto(
            cluster, self._app.cluster_report(cluster), self._app.cluster_networks(cluster)
        )

    @unary
    async def GetStatus(self, request: Any, context: Any) -> manager_pb2.GetStatusResponse:
        s = self._app.status()
        return manager_pb2.GetStatusResponse(
            manager_version=s.version,
            hosts_total=s.hosts_total,
            hosts_ok=s.hosts_ok,
            vms_total=s.vms_total,
            vms_running=s.vms_running,
            clusters=[self._cluster(c) for c in s.clusters],
            jobs_running=s.jobs_running,
            vmm_version=s.vmm_version,
        )

    @unary
    async def ListHosts(self, request: Any, context: Any) -> manager_pb2.ListHostsResponse:
        return manager_pb2.ListHostsResponse(hosts=[_host(v) for v in self._app.list_hosts(request.cluster)])

    @unary
    async def GetHost(self, request: Any, context: Any) -> manager_pb2.GetHostResponse:
        return manager_pb2.GetHostResponse(host=_host(self._app.get_host(request.name)))

    @unary
    async def ListClusters(self, request: Any, context: Any) -> manager_pb2.ListClustersResponse:
        return manager_pb2.ListClustersResponse(
            clusters=[self._cluster(c) for c in self._app.list_clusters()]
        )

    @unary
    async def GetCluster(self, request: Any, context: Any) -> manager_pb2.GetClusterResponse:
        cluster = self._app.get_cluster(request.name)
        return manager_pb2.GetClusterResponse(cluster=self._cluster(cluster))

    @unary
    @mutation
    async def RefreshCluster(self, request: Any, context: Any) -> manager_pb2.RefreshClusterResponse:
        return manager_pb2.RefreshClusterResponse(job=job_to_proto(self._app.refresh(request.target)))

    @unary
    @mutation
    async def CreateVm(self, request: Any, context: Any) -> manager_pb2.CreateVmResponse:
        command = CreateVmCommand(
            name=request.name,
            memory_mb=request.memory_mb,
            cpus=request.cpus,
            disk_gb=request.disk_gb,
            highly_available=request.highly_available,
            host=request.host or None,
            storage=requested_storage_from_proto(request.storage) if request.HasField("storage") else None,
            networks=tuple(request.networks),
            workload=workload_from_proto(request.workload),
            no_start=request.no_start,
            restart_priority=restart_priority_from_proto(request.restart_priority),
            processor_compatibility=request.processor_compatibility,
            policy=policy_from_proto(request.failover_policy),
        )
        job, vm = self._app.create_vm(command)
        return manager_pb2.CreateVmResponse(job=job_to_proto(job), vm=self._vm(vm))

    @unary
    async def ListVms(self, request: Any, context: Any) -> manager_pb2.ListVmsResponse:
        return manager_pb2.ListVmsResponse(vms=self._vms(self._app.list_vms(request.host)))

    @unary
    async def GetVm(self, request: Any, context: Any) -> manager_pb2.GetVmResponse:
        return manager_pb2.GetVmResponse(vm=self._vm(self._app.get_vm(request.name)))

    @unary
    @mutation
    async def OperateVm(self, request: Any, context: Any) -> manager_pb2.OperateVmResponse:
        operation = operation_from_proto(request.operation)
        return manager_pb2.OperateVmResponse(job=job_to_proto(self._app.operate_vm(request.name, operation)))

    @unary
    @mutation
    async def DeleteVm(self, request: Any, context: Any) -> manager_pb2.DeleteVmResponse:
        return manager_pb2.DeleteVmResponse(job=job_to_proto(self._app.delete_vm(request.name)))

    @unary
    async def ListJobs(self, request: Any, context: Any) -> manager_pb2.ListJobsResponse:
        return manager_pb2.ListJobsResponse(
            jobs=[job_to_proto(j) for j in self._app.list_jobs(request.limit)]
        )

    @unary
    async def GetJob(self, request: Any, context: Any) -> manager_pb2.GetJobResponse:
        return manager_pb2.GetJobResponse(job=job_to_proto(self._app.get_job(request.id)))

    @unary
    @mutation
    async def ConvertDisk(self, request: Any, context: Any) -> manager_pb2.ConvertDiskResponse:
        disk = requested_storage_from_proto(request.disk) if request.HasField("disk") else None
        return manager_pb2.ConvertDiskResponse(job=job_to_proto(self._app.convert_disk(request.name, disk)))

    @unary
    @mutation
    async def UpdateVm(self, request: Any, context: Any) -> manager_pb2.UpdateVmResponse:
        policy = policy_from_proto(request.failover_policy) if request.HasField("failover_policy") else None
        job, vm = self._app.update_vm(request.name, settings_change_from_proto(request), policy)
        return manager_pb2.UpdateVmResponse(job=job_to_proto(job), vm=self._vm(vm))

    @unary
    @mutation
    async def RepairVm(self, request: Any, context: Any) -> manager_pb2.RepairVmResponse:
        job, vm = self._app.repair_vm(request.name, repair_action_from_proto(request.action))
        return manager_pb2.RepairVmResponse(job=job_to_proto(job), vm=self._vm(vm))

    @unary
    async def ListClusterGroups(self, request: Any, context: Any) -> manager_pb2.ListClusterGroupsResponse:
        groups = self._app.cluster_groups(request.cluster)
        return manager_pb2.ListClusterGroupsResponse(groups=[cluster_group_to_proto(g) for g in groups])

    @unary
    @mutation
    async def ShutdownHost(self, request: Any, context: Any) -> manager_pb2.ShutdownHostResponse:
        job = self._app.shutdown_host(request.host, shutdown_action_from_proto(request.action))
        return manager_pb2.ShutdownHostResponse(job=job_to_proto(job))

    @unary
    @mutation
    async def MigrateVm(self, request: Any, context: Any) -> manager_pb2.MigrateVmResponse:
        policy = no_converge_from_proto(request.no_converge)
        transfer = transfer_from_proto(request.transfer)
        storage = requested_storage_from_proto(request.storage) if request.HasField("storage") else None
        job, migration = await self._app.migrate_vm(
            request.name, request.host, request.quick, policy, transfer, request.make_ha, storage
        )
        return manager_pb2.MigrateVmResponse(job=job_to_proto(job), migration=migration_to_proto(migration))

    @unary
    @mutation
    async def MigrateVmStorage(self, request: Any, context: Any) -> manager_pb2.MigrateVmStorageResponse:
        storage = requested_storage_from_proto(request.storage) if request.HasField("storage") else None
        job, migration = await self._app.migrate_vm_storage(request.name, request.host, storage)
        return manager_pb2.MigrateVmStorageResponse(
            job=job_to_proto(job), migration=migration_to_proto(migration)
        )

    @unary
    @mutation
    async def StoreVm(self, request: Any, context: Any) -> manager_pb2.StoreVmResponse:
        transfer = transfer_from_proto(request.transfer)
        job, migration = await self._app.store_vm(request.name, request.library, transfer)
        return manager_pb2.StoreVmResponse(job=job_to_proto(job), migration=migration_to_proto(migration))

    @unary
    @mutation
    async def DeployVm(self, request: Any, context: Any) -> manager_pb2.DeployVmResponse:
        transfer = transfer_from_proto(request.transfer)
        storage = requested_storage_from_proto(request.storage) if request.HasField("storage") else None
        job, migration = await self._app.deploy_vm(
            request.name, request.host, transfer, request.make_ha, storage
        )
        return manager_pb2.DeployVmResponse(job=job_to_proto(job), migration=migration_to_proto(migration))

    @unary
    async def ListMigrations(self, request: Any, context: Any) -> manager_pb2.ListMigrationsResponse:
        return manager_pb2.ListMigrationsResponse(
            migrations=[migration_to_proto(m) for m in self._app.list_migrations(request.limit)]
        )

    @unary
    async def RateHosts(self, request: Any, context: Any) -> manager_pb2.RateHostsResponse:
        shape = VmShape(
            memory_mb=request.memory_mb,
            cpus=request.cpus,
            disk_gb=request.disk_gb,
            highly_available=request.highly_available,
            storage=requested_storage_from_proto(request.storage) if request.HasField("storage") else None,
            networks=tuple(request.networks),
        )
        return ratings_to_proto(self._app.rate_hosts(shape))

    @unary
    @mutation
    async def UpdateCluster(self, request: Any, context: Any) -> manager_pb2.UpdateClusterResponse:
        reserve = request.reserve if request.HasField("reserve") else None
        job, cluster = self._app.update_cluster(request.name, reserve)
        return manager_pb2.UpdateClusterResponse(job=job_to_proto(job), cluster=self._cluster(cluster))

    @unary
    @mutation
    async def StartMaintenance(self, request: Any, context: Any) -> manager_pb2.StartMaintenanceResponse:
        mode = maintenance_mode_from_proto(request.mode)
        return manager_pb2.StartMaintenanceResponse(
            job=job_to_proto(self._app.start_maintenance(request.host, mode))
        )

    @unary
    @mutation
    async def StopMaintenance(self, request: Any, context: Any) -> manager_pb2.StopMaintenanceResponse:
        return manager_pb2.StopMaintenanceResponse(job=job_to_proto(self._app.stop_maintenance(request.host)))

    @unary
    @mutation
    async def AddHost(self, request: Any, context: Any) -> manager_pb2.AddHostResponse:
        job, host = self._app.host_admin.add(host_spec_from_proto(request.host))
        return manager_pb2.AddHostResponse(job=job_to_proto(job), host=host_to_proto(host, 0, 0.0))

    @unary
    @mutation
    async def RemoveHost(self, request: Any, context: Any) -> manager_pb2.RemoveHostResponse:
        return manager_pb2.RemoveHostResponse(job=job_to_proto(self._app.host_admin.remove(request.name)))

    @unary
    async def GetMigration(self, request: Any, context: Any) -> manager_pb2.GetMigrationResponse:
        return manager_pb2.GetMigrationResponse(
            migration=migration_to_proto(self._app.get_migration(request.id))
        )

    async def WatchJob(
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[manager_pb2.WatchJobResponse]:
        try:
            stream = self._app.watch_job(request.id)
        except ManagerError as error:
            await context.abort(_status_code(error), error.message)
            return
        async for job in stream:
            yield manager_pb2.WatchJobResponse(job=job_to_proto(job))

    async def WatchEvents(
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[manager_pb2.WatchEventsResponse]:
        if request.replay < 0:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"replay: must not be negative, got {request.replay}"
            )
            return
        async for event in self._app.watch_events(request.replay, request.follow):
            yield manager_pb2.WatchEventsResponse(event=event_to_proto(event))


class ManagerServer:
    """The grpc.aio server with ManagerService, health checking and reflection."""

    def __init__(self, app: ManagerApi, listen: str, identity: IdentityFile | None = None) -> None:
        guard = CallGuard(logging.getLogger("manager.api"), ManagerAdmission())
        self.server = grpc.aio.server(options=API_SERVER_OPTIONS, interceptors=[guard])
        manager_pb2_grpc.add_ManagerServiceServicer_to_server(ManagerServicer(app), self.server)
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), self.server
        )
        try:
            if identity is None:
                self.port = self.server.add_insecure_port(listen)
            else:
                self.port = self.server.add_secure_port(listen, identity.server_credentials())
        except RuntimeError:  # grpc's way of saying the address is taken or invalid
            self.port = 0
        if self.port == 0:
            raise OSError(f"cannot listen on {listen}: the address is in use or invalid")

    async def start(self) -> None:
        await self.server.start()
        for service in ("", SERVICE_NAME):
            await self.health.set(service, health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, grace: float) -> None:
        for service in ("", SERVICE_NAME):
            await self.health.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.stop(grace)

"""A small synchronous client of the manager's gRPC API for the command line.

The CLI runs one call (or one job stream) per invocation, so a blocking channel is the
simplest fit. Its one real job is error translation: a `grpc.RpcError` becomes a
`CliError` subclass whose message is fit to print, and a manager that cannot be reached
is told apart from a manager that answered "a host is unavailable".
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Generator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import grpc
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_fixed

from havm.cli import errors
from havm.contract.grpc_policy import API_CHANNEL_OPTIONS, transport_failure
from havm.contract.identity import MANAGER_NAME, IdentityFile, sync_channel
from havm.healthcheck import tcp_ready
from havm.v1 import agent_pb2, common_pb2, manager_pb2, manager_pb2_grpc

_START_HINT = "is the cluster running? start it with `havm up`"
# The metadata key of a change's request id (the manager's side: manager.adapters.grpc_server).
REQUEST_ID_KEY = "havm-request-id"

_BY_CODE: dict[grpc.StatusCode, type[errors.ManagerCallError]] = {
    grpc.StatusCode.NOT_FOUND: errors.NotFound,
    grpc.StatusCode.ALREADY_EXISTS: errors.AlreadyExists,
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidArgument,
    grpc.StatusCode.OUT_OF_RANGE: errors.InvalidArgument,
    grpc.StatusCode.FAILED_PRECONDITION: errors.FailedPrecondition,
    grpc.StatusCode.RESOURCE_EXHAUSTED: errors.ResourceExhausted,
    grpc.StatusCode.UNAVAILABLE: errors.HostUnavailable,
    grpc.StatusCode.PERMISSION_DENIED: errors.PermissionDenied,
}


@dataclass(frozen=True)
class ClientSettings:
    """Timeouts of the command line's calls to the manager, in seconds."""

    # One unary call (a read, or the call that starts a job).
    call_timeout_s: float = 10.0
    # Waiting for a job to finish: migrations and cluster refreshes take a while.
    job_timeout_s: float = 3600.0
    # How often a followed migration is asked for its figures (pass, MB/s, remaining).
    migration_poll_interval_s: float = 0.2
    # While following a migration, how long a manager that stopped answering may take to
    # come back (it finds its migrations again after a restart) before the command gives up.
    manager_restart_grace_s: float = 30.0
    # After an UNAVAILABLE answer, how long to try connecting to tell "the manager is
    # down" from "the manager says a host is down".
    reachability_probe_s: float = 1.0
    # How long closing the channel may take when the command ends.
    close_timeout_s: float = 2.0
    # Between two attempts to reach a manager that did not answer.
    retry_interval_s: float = 0.5


@dataclass(frozen=True)
class ClientClock:
    """How a command waits between two polls: real time, or a scenario's virtual time."""

    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


class ManagerClient:
    """Blocking calls to one manager; raises `errors.CliError` subclasses only."""

    def __init__(
        self,
        address: str,
        settings: ClientSettings | None = None,
        channel: grpc.Channel | None = None,
        clock: ClientClock | None = None,
        identity: IdentityFile | None = None,
    ) -> None:
        self.address = address
        self.settings = settings or ClientSettings()
        self.identity = identity
        # A scenario hands in its in-process channel and its virtual clock.
        self._channel = (
            channel
            if channel is not None
            else sync_channel(address, identity, MANAGER_NAME, API_CHANNEL_OPTIONS)
        )
        self._stub = manager_pb2_grpc.ManagerServiceStub(self._channel)
        # Set once the manager answered: a manager that was there and went away (it
        # restarts) is waited for; one that never answered is not.
        self._answered = False
        clock = clock or ClientClock()
        self.monotonic, self.sleep = clock.monotonic, clock.sleep

    def close(self) -> None:
        # grpc's close waits until every call on the channel has ended; a stream that a
        # Ctrl-C interrupted at the wrong moment may never tell it so. A command about to
        # exit gives it a moment, not its life.
        closer = threading.Thread(target=self._channel.close, daemon=True)
        closer.start()
        closer.join(timeout=self.settings.close_timeout_s)

    def __enter__(self) -> ManagerClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # Reads.

    def get_status(self) -> manager_pb2.GetStatusResponse:
        return self._call(self._stub.GetStatus, manager_pb2.GetStatusRequest())

    def list_hosts(self, cluster: str = "") -> list[manager_pb2.Host]:
        reply = self._call(self._stub.ListHosts, manager_pb2.ListHostsRequest(cluster=cluster))
        return list(reply.hosts)

    def get_host(self, name: str) -> manager_pb2.Host:
        return self._call(self._stub.GetHost, manager_pb2.GetHostRequest(name=name)).host

    def list_clusters(self) -> list[manager_pb2.Cluster]:
        reply = self._call(self._stub.ListClusters, manager_pb2.ListClustersRequest())
        return list(reply.clusters)

    def get_cluster(self, name: str) -> manager_pb2.Cluster:
        reply = self._call(self._stub.GetCluster, manager_pb2.GetClusterRequest(name=name))
        return reply.cluster

    def list_cluster_groups(self, cluster: str) -> list[manager_pb2.ClusterGroup]:
        request = manager_pb2.ListClusterGroupsRequest(cluster=cluster)
        return list(self._call(self._stub.ListClusterGroups, request).groups)

    def list_vms(self, host: str = "") -> list[manager_pb2.Vm]:
        return list(self._call(self._stub.ListVms, manager_pb2.ListVmsRequest(host=host)).vms)

    def get_vm(self, name: str) -> manager_pb2.Vm:
        return self._call(self._stub.GetVm, manager_pb2.GetVmRequest(name=name)).vm

    def list_jobs(self, limit: int = 0) -> list[manager_pb2.Job]:
        reply = self._call(self._stub.ListJobs, manager_pb2.ListJobsRequest(limit=limit))
        return list(reply.jobs)

    def get_job(self, job_id: str) -> manager_pb2.Job:
        return self._call(self._stub.GetJob, manager_pb2.GetJobRequest(id=job_id)).job

    def list_migrations(self, limit: int = 0) -> list[manager_pb2.Migration]:
        reply = self._call(self._stub.ListMigrations, manager_pb2.ListMigrationsRequest(limit=limit))
        return list(reply.migrations)

    def get_migration(self, migration_id: str) -> manager_pb2.Migration:
        reply = self._call(self._stub.GetMigration, manager_pb2.GetMigrationRequest(id=migration_id))
        return reply.migration

    def rate_hosts(self, request: manager_pb2.RateHostsRequest) -> manager_pb2.RateHostsResponse:
        return self._call(self._stub.RateHosts, request)

    # Changes: each returns the job that carries it out.

    def update_cluster(self, request: manager_pb2.UpdateClusterRequest) -> manager_pb2.UpdateClusterResponse:
        return self._mutate(self._stub.UpdateCluster, request)

    def start_maintenance(self, host: str, mode: manager_pb2.MaintenanceMode) -> manager_pb2.Job:
        request = manager_pb2.StartMaintenanceRequest(host=host, mode=mode)
        return self._mutate(self._stub.StartMaintenance, request).job

    def add_host(self, config: common_pb2.HostConfig) -> manager_pb2.AddHostResponse:
        return self._mutate(self._stub.AddHost, manager_pb2.AddHostRequest(host=config))

    def remove_host(self, name: str) -> manager_pb2.Job:
        return self._mutate(self._stub.RemoveHost, manager_pb2.RemoveHostRequest(name=name)).job

    def stop_maintenance(self, host: str) -> manager_pb2.Job:
        request = manager_pb2.StopMaintenanceRequest(host=host)
        return self._mutate(self._stub.StopMaintenance, request).job

    def refresh_cluster(self, target: str = "") -> manager_pb2.Job:
        request = manager_pb2.RefreshClusterRequest(target=target)
        return self._mutate(self._stub.RefreshCluster, request).job

    def create_vm(self, request: manager_pb2.CreateVmRequest) -> manager_pb2.CreateVmResponse:
        return self._mutate(self._stub.CreateVm, request)

    def operate_vm(self, name: str, operation: agent_pb2.VmOperation) -> manager_pb2.Job:
        request = manager_pb2.OperateVmRequest(name=name, operation=operation)
        return self._mutate(self._stub.OperateVm, request).job

    def update_vm(self, request: manager_pb2.UpdateVmRequest) -> manager_pb2.UpdateVmResponse:
        return self._mutate(self._stub.UpdateVm, request)

    def convert_disk(self, name: str, disk: common_pb2.StorageLocation) -> manager_pb2.Job:
        request = manager_pb2.ConvertDiskRequest(name=name, disk=disk)
        return self._mutate(self._stub.ConvertDisk, request).job

    def repair_vm(self, name: str, action: manager_pb2.RepairAction) -> manager_pb2.RepairVmResponse:
        return self._mutate(self._stub.RepairVm, manager_pb2.RepairVmRequest(name=name, action=action))

    def shutdown_host(self, host: str, action: manager_pb2.ShutdownAction) -> manager_pb2.Job:
        request = manager_pb2.ShutdownHostRequest(host=host, action=action)
        return self._mutate(self._stub.ShutdownHost, request).job

    def migrate_vm(self, request: manager_pb2.MigrateVmRequest) -> manager_pb2.MigrateVmResponse:
        return self._mutate(self._stub.MigrateVm, request)

    def migrate_vm_storage(
        self, request: manager_pb2.MigrateVmStorageRequest
    ) -> manager_pb2.MigrateVmStorageResponse:
        return self._mutate(self._stub.MigrateVmStorage, request)

    def store_vm(self, request: manager_pb2.StoreVmRequest) -> manager_pb2.StoreVmResponse:
        return self._mutate(self._stub.StoreVm, request)

    def deploy_vm(self, request: manager_pb2.DeployVmRequest) -> manager_pb2.DeployVmResponse:
        return self._mutate(self._stub.DeployVm, request)

    def delete_vm(self, name: str) -> manager_pb2.Job:
        return self._mutate(self._stub.DeleteVm, manager_pb2.DeleteVmRequest(name=name)).job

    def watch_job(self, job_id: str) -> Generator[manager_pb2.Job]:
        """The job now, then each change, until the manager ends the stream. A manager
        that stops answering meanwhile (it restarts) is waited for up to
        `manager_restart_grace_s`, and the job followed again."""
        request = manager_pb2.WatchJobRequest(id=job_id)
        lost_at: float | None = None
        while True:
            call = self._stub.WatchJob(request, timeout=self.settings.job_timeout_s)
            try:
                for reply in call:
                    lost_at = None
                    self._answered = True
                    yield reply.job
                return
            except grpc.RpcError as exc:
                error = self._translate(exc, self.settings.job_timeout_s)
                if not isinstance(error, errors.ManagerUnreachable):
                    raise error from None
                if not self._lost_manager():
                    raise error from None
                lost_at = lost_at if lost_at is not None else self.monotonic()
                if self.monotonic() - lost_at > self.settings.manager_restart_grace_s:
                    raise error from None
            finally:
                _cancel(call)
            self.sleep(self.settings.retry_interval_s)

    def watch_events(self, replay: int, follow: bool) -> Generator[manager_pb2.Event]:
        """Up to `replay` recent events, then (with `follow`) each new one until Ctrl-C."""
        request = manager_pb2.WatchEventsRequest(replay=replay, follow=follow)
        timeout = None if follow else self.settings.call_timeout_s
        call = self._stub.WatchEvents(request, timeout=timeout)
        try:
            for reply in call:
                yield reply.event
        except grpc.RpcError as exc:
            raise self._translate(exc, timeout or 0) from None
        finally:
            _cancel(call)

    # Plumbing.

    def _mutate(self, method: Any, request: Any) -> Any:
        """A call that changes something, named by a request id of its own: sent again
        with the same id while the manager cannot be reached (it restarts, say), up to
        `manager_restart_grace_s`; the manager does it once and answers every copy with
        the same job."""
        # From the OS, not uuid4: a scenario seeds uuid4 for the ids it records.
        metadata = ((REQUEST_ID_KEY, str(uuid.UUID(bytes=os.urandom(16), version=4))),)
        retrying = Retrying(
            retry=retry_if_exception(self._lost_manager),
            stop=stop_after_delay(self.settings.manager_restart_grace_s),
            wait=wait_fixed(self.settings.retry_interval_s),
            sleep=self.sleep,
            reraise=True,
        )
        return retrying(self._call, method, request, metadata)

    def _lost_manager(self, error: BaseException | None = None) -> bool:
        """The manager was there for this command (it answered, or the connection broke
        under a call) and cannot be reached now."""
        if error is not None and not isinstance(error, errors.ManagerUnreachable):
            return False
        broke = isinstance(error, errors.ManagerUnreachable) and error.connection_broke
        return self._answered or broke

    def _call(self, method: Any, request: Any, metadata: tuple[tuple[str, str], ...] = ()) -> Any:
        try:
            reply = method(request, timeout=self.settings.call_timeout_s, metadata=metadata)
        except grpc.RpcError as exc:
            raise self._translate(exc, self.settings.call_timeout_s) from None
        self._answered = True
        return reply

    def _translate(self, exc: grpc.RpcError, timeout_s: float) -> errors.CliError:
        code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
        details = (exc.details() if isinstance(exc, grpc.Call) else "") or str(code)
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return errors.ManagerTimeout(
                f"the manager at {self.address} did not answer within {timeout_s:g} s ({_START_HINT})"
            )
        lost = code == grpc.StatusCode.UNAVAILABLE and transport_failure(details)
        if lost or (code == grpc.StatusCode.UNAVAILABLE and not self._reachable()):
            hint = _START_HINT
            if self.identity is not None:
                hint += f"; with identity {self.identity.identity.name!r}, the manager must trust its CA"
            elif tcp_ready(self.address):
                hint = (
                    "it takes connections, but not plaintext ones: "
                    "a cluster with mutual TLS needs --identity FILE"
                )
            unreachable = errors.ManagerUnreachable(f"cannot reach the manager at {self.address} ({hint})")
            # grpc's words when a connection that existed broke, not when none could be made.
            unreachable.connection_broke = lost and not details.startswith("failed to connect")
            return unreachable
        error_class = _BY_CODE.get(code, errors.ManagerCallError)
        return error_class(details)

    def _reachable(self) -> bool:
        try:
            grpc.channel_ready_future(self._channel).result(timeout=self.settings.reachability_probe_s)
        except grpc.FutureTimeoutError:
            return False
        return True


def _cancel(call: object) -> None:
    """End a stream the command no longer reads (Ctrl-C, an early return): a stream left
    open can keep the process from exiting while gRPC shuts down."""
    cancel = getattr(call, "cancel", None)
    if cancel is not None:
        cancel()

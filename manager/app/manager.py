"""The manager application: the one object the gRPC servicer talks to.

It composes the job book, the refresh service and the VM service over one store and
one agent port, answers the read calls, and owns the background refresh loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from havm.contract.topology import Topology
from manager import __version__
from manager.app.capacity import CapacityService
from manager.app.claims import VmClaims
from manager.app.cluster_settings import ClusterSettings
from manager.app.config_review import ConfigJudgingStore
from manager.app.crash_points import CrashPoints
from manager.app.disk_conversion import DiskConversions
from manager.app.duplicates import DuplicateResolver
from manager.app.events import EventBus, EventingStore
from manager.app.failback import FailbackService
from manager.app.ha import HaService
from manager.app.host_admin import HostAdmin
from manager.app.interrupted_creates import InterruptedCreates
from manager.app.jobs import JobBook, JobHandle
from manager.app.maintenance import MaintenanceService
from manager.app.migrations import MigrationService
from manager.app.outside_changes import OutsideChanges
from manager.app.refresh import HostRefresh, RefreshService
from manager.app.repair import RepairService
from manager.app.shutdown import ShutdownService
from manager.app.vm_policy import VmPolicyService
from manager.app.vms import VmService
from manager.core.agent_port import AgentPort
from manager.core.capacity import ReserveReport
from manager.core.cluster_config import ClusterNetwork, cluster_networks
from manager.core.cluster_groups import ClusterGroup, cluster_groups, vm_paths
from manager.core.errors import InvalidArgumentError, NotFoundError, UnavailableError
from manager.core.failover_policy import effective_max_failovers
from manager.core.host_choice import RatingsView, VmShape
from manager.core.inventory import host_capacity, merge_topology, removed_from_topology
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
from manager.core.placement import PlacementRequest, rate_host
from manager.core.repair import RepairAction
from manager.core.settings import Settings
from manager.core.shutdown import ShutdownAction
from manager.core.states import HostState, VmState
from manager.core.store import Store
from manager.core.transfer import Transfer

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class HostView:
    host: HostRecord
    vm_count: int
    rating: float


@dataclass(frozen=True)
class StatusView:
    version: str
    hosts_total: int
    hosts_ok: int
    vms_total: int
    vms_running: int
    clusters: list[ClusterRecord]
    jobs_running: int
    vmm_version: str


class ManagerApp:
    def __init__(
        self,
        store: Store,
        agents: AgentPort,
        settings: Settings,
        clock: Callable[[], datetime] = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
        crash_points: CrashPoints | None = None,
    ) -> None:
        self.events = EventBus(settings.event_buffer, clock)
        # Judging writes through the event layer, so that a status it changes is an event.
        self.judging = ConfigJudgingStore(EventingStore(store, self.events), settings.level)
        store = self.judging
        self.store = store
        self.settings = settings
        self._agents = agents
        self._monotonic = monotonic
        self._clock = clock
        self.jobs = JobBook(store, clock)
        self.capacity = CapacityService(store, settings, self.events)
        # Which VMs a job, a migration or a failover works on: one object all of them share.
        self.claims = VmClaims()
        self.vms = VmService(
            store, agents, self.jobs, settings, clock, self.capacity, self.claims, crash_points
        )
        self.policies = VmPolicyService(store, self.jobs, self.vms)
        self.conversions = DiskConversions(store, agents, self.jobs, self.vms)
        self.cluster_settings = ClusterSettings(store, self.jobs, self.events, self.capacity)
        self.refresher = RefreshService(
            store,
            agents,
            settings,
            clock,
            self.claims,
            self.vms.vm_versions,
            DuplicateResolver(store, agents, self.vms, self.events, clock),
        )
        self.interrupted_creates = InterruptedCreates(store, self.jobs, self.refresher)
        self.refresher.on_stopped_outside = OutsideChanges(self.vms, self.events).on_stopped
        self.repairs = RepairService(
            store, self.jobs, self.vms, agents, settings, self.refresher, self.judging.accept
        )
        self.migrations = MigrationService(
            store, agents, self.jobs, self.vms, settings, self.events, clock, monotonic, crash_points
        )
        self.maintenance = MaintenanceService(
            store,
            self.jobs,
            self.vms,
            self.migrations,
            self.refresher,
            self.capacity,
            settings,
            lambda: self.migrations.policy.max_live_migrations_per_host,
        )
        self.failback = FailbackService(
            store, self.jobs, self.migrations, self.events, settings, clock, monotonic
        )
        self.shutdowns = ShutdownService(
            store, self.jobs, self.vms, self.migrations, agents, self.capacity, settings
        )
        self.host_admin = HostAdmin(
            store, agents, self.jobs, self.refresher, self.capacity.changed, clock, self.events
        )
        self.ha: HaService | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._ha_task: asyncio.Task[None] | None = None
        self._capacity_task: asyncio.Task[None] | None = None
        self._recovery_task: asyncio.Task[None] | None = None
        self._creates_task: asyncio.Task[None] | None = None
        self._failback_task: asyncio.Task[None] | None = None

    # --- lifecycle -----------------------------------------------------------------

    def load(self, topology: Topology) -> None:
        """Upsert the topology into the store and close jobs a previous process left.

        Hosts and clusters the topology no longer declares are forgotten; raises
        FailedPreconditionError (and changes nothing) if VMs are recorded on such a host.
        """
        gone_hosts, gone_clusters = removed_from_topology(
            topology, self.store.list_hosts(), self.store.list_clusters(), self.store.list_vms()
        )
        for name in gone_hosts:
            log.info("host %s is no longer in the topology: forgotten", name)
            self.store.delete_host(name)
        for name in gone_clusters:
            log.info("cluster %s is no longer in the topology: forgotten", name)
            self.store.delete_cluster(name)
        known = {h.name for h in self.store.list_hosts()}
        hosts, clusters = merge_topology(topology, self.store.list_hosts(), self.store.list_clusters())
        for name in gone_hosts:
            self.events.emit("topology", f"host {name} was removed from the topology", host=name)
        for host in hosts:
            if known and host.name not in known:
                # Refreshed by the first refresh pass, which runs at once on start.
                self.events.emit("topology", f"host {host.name} was added to the topology", host=host.name)
        stored = {c.name: c for c in self.store.list_clusters()}
        for cluster in clusters:
            old = stored.get(cluster.name)
            if old is not None and old.reserve_overridden and old.reserve < len(cluster.nodes):
                # A reserve set through UpdateCluster outlives the topology's value.
                cluster = replace(cluster, reserve=old.reserve, reserve_overridden=True)
            self.store.put_cluster(cluster)
        for host in hosts:
            self.store.put_host(host)
        self.migrations.policy = topology.migration
        # Before the jobs: a running migration's VM must stay out of the first refresh.
        self.migrations.settle_queued()
        interrupted = self.jobs.fail_interrupted(
            settled_later=self.migrations.jobs_being_settled() | self.interrupted_creates.take(),
            concluded=self.migrations.concluded_jobs(),
        )
        if interrupted:
            log.warning("%d job(s) were running when the manager last stopped: marked failed", interrupted)
        judged = self.judging.review_all()
        if judged:
            log.info("cluster configuration judged again: %d VM status(es) changed", judged)
        self.capacity.changed()
        log.info("topology loaded: %d cluster(s), %d host(s)", len(clusters), len(hosts))

    def enable_ha(self) -> HaService:
        """Judge host health from heartbeats (a broker is configured); call after load."""
        self.ha = HaService(
            self.store,
            self._agents,
            self.settings,
            self.refresher,
            self.vms,
            self.events,
            self._monotonic,
            self._clock,
        )
        return self.ha

    def start_background(self) -> None:
        loop = asyncio.get_running_loop()
        self._recovery_task = loop.create_task(self.migrations.recover())
        self._creates_task = loop.create_task(self.interrupted_creates.conclude())
        self._loop_task = loop.create_task(self.refresher.run_periodically())
        self._capacity_task = loop.create_task(self.capacity.run())
        self._failback_task = loop.create_task(self.failback.run())
        if self.ha is not None:
            self._ha_task = loop.create_task(self.ha.run())

    async def stop(self) -> None:
        for task in (
            self._creates_task,
            self._loop_task,
            self._ha_task,
            self._recovery_task,
            self._capacity_task,
            self._failback_task,
        ):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await self.repairs.stop()
        if self.ha is not None:
            await self.ha.stop()
        await self.jobs.shutdown()
        await self._agents.close()

    # --- reads ---------------------------------------------------------------------

    def _host_view(self, host: HostRecord, clusters: list[ClusterRecord], vms: list[VmRecord]) -> HostView:
        count = sum(1 for vm in vms if vm.host == host.name)
        rating = 0.0
        if host.state is HostState.OK and not host.capabilities.library_server:
            request = PlacementRequest(
                vm_name="rating",
                memory_mb=self.settings.rating_memory_mb,
                cpus=self.settings.rating_cpus,
                disk_gb=0,
                highly_available=host.cluster is not None,
                max_vcpus_per_core=self.settings.max_vcpus_per_core,
                goal=self.settings.placement_goal,
                weights=self.settings.rating_weights,
            )
            rating = rate_host(host_capacity(host, clusters, vms), request)
        return HostView(host, count, rating)

    def list_hosts(self, cluster: str = "") -> list[HostView]:
        if cluster and self.store.get_cluster(cluster) is None:
            raise NotFoundError(f"cluster {cluster} does not exist")
        clusters = self.store.list_clusters()
        vms = self.store.list_vms()
        return [
            self._host_view(h, clusters, vms)
            for h in self.store.list_hosts()
            if not cluster or h.cluster == cluster
        ]

    def get_host(self, name: str) -> HostView:
        host = self.store.get_host(name)
        if host is None:
            raise NotFoundError(f"host {name} does not exist")
        return self._host_view(host, self.store.list_clusters(), self.store.list_vms())

    def list_clusters(self) -> list[ClusterRecord]:
        return self.store.list_clusters()

    def get_cluster(self, name: str) -> ClusterRecord:
        cluster = self.store.get_cluster(name)
        if cluster is None:
            raise NotFoundError(f"cluster {name} does not exist")
        return cluster

    def cluster_report(self, cluster: ClusterRecord) -> ReserveReport:
        """The cluster's reserve verdict: its state and, when overcommitted, why."""
        return self.capacity.report(cluster.name)

    def cluster_networks(self, cluster: ClusterRecord) -> tuple[ClusterNetwork, ...]:
        """Every network name of the cluster's nodes and whether it is common to all."""
        nodes = [h for h in self.store.list_hosts() if h.name in cluster.nodes]
        return cluster_networks(nodes, self.settings.level.network_names_case_sensitive)

    def cluster_groups(self, name: str) -> tuple[ClusterGroup, ...]:
        """Every highly available VM's cluster group on the cluster's nodes."""
        cluster = self.get_cluster(name)
        hosts = {h.name: h for h in self.store.list_hosts()}
        return cluster_groups(cluster, hosts, self.store.list_vms())

    def vm_paths(self, vms: list[VmRecord]) -> dict[str, str]:
        """Where each VM's files are as its host addresses them, by VM id."""
        if not vms:
            return {}
        hosts = {h.name: h for h in self.store.list_hosts()}
        clusters = {c.name: c for c in self.store.list_clusters()}
        return vm_paths(vms, hosts, clusters, self.store.list_vms())

    def rate_hosts(self, shape: VmShape) -> RatingsView:
        """Every host rated for a VM of this shape, best first; creates nothing."""
        return self.vms.rate(shape)

    def list_vms(self, host: str = "") -> list[VmRecord]:
        if host and self.store.get_host(host) is None:
            raise NotFoundError(f"host {host} does not exist")
        return self.store.list_vms(host or None)

    def get_vm(self, name: str) -> VmRecord:
        vm = self.store.get_vm_by_name(name)
        if vm is None:
            raise NotFoundError(f"VM {name} does not exist")
        return vm

    def status(self) -> StatusView:
        hosts = self.store.list_hosts()
        vms = self.store.list_vms()
        return StatusView(
            version=__version__,
            hosts_total=len(hosts),
            hosts_ok=sum(1 for h in hosts if h.state is HostState.OK),
            vms_total=len(vms),
            vms_running=sum(1 for vm in vms if vm.state is VmState.RUNNING),
            clusters=self.store.list_clusters(),
            jobs_running=self.jobs.running_count(),
            vmm_version=self.settings.vmm_version.value,
        )

    def list_jobs(self, limit: int = 0) -> list[JobRecord]:
        if limit < 0:
            raise InvalidArgumentError(f"limit: must not be negative, got {limit}")
        return self.jobs.list(limit or self.settings.jobs_list_default)

    def get_job(self, job_id: str) -> JobRecord:
        return self.jobs.get(job_id)

    def requested(self, request_id: str) -> AbstractContextManager[None]:
        """While inside, the job the call starts takes the client's request id."""
        return self.jobs.requested(request_id)

    def job_for_request(self, request_id: str) -> JobRecord | None:
        return self.jobs.for_request(request_id)

    def migration_of_job(self, job_id: str) -> MigrationRecord | None:
        """The migration a MigrateVm or MigrateVmStorage job carries out."""
        return next((m for m in self.migrations.list(0) if m.job_id == job_id), None)

    def find_vm(self, name: str) -> VmRecord | None:
        return self.store.get_vm_by_name(name)

    def watch_events(self, replay: int, follow: bool = True) -> AsyncIterator[Event]:
        return self.events.watch(replay, follow)

    def watch_job(self, job_id: str) -> AsyncIterator[JobRecord]:
        self.jobs.get(job_id)  # NOT_FOUND before the stream starts
        return self.jobs.watch(job_id)

    # --- changes -------------------------------------------------------------------

    def update_cluster(self, name: str, reserve: int | None) -> tuple[JobRecord, ClusterRecord]:
        return self.cluster_settings.update(name, reserve)

    def shutdown_host(self, name: str, action: ShutdownAction) -> JobRecord:
        return self.shutdowns.shutdown(name, action)

    def start_maintenance(self, host: str, mode: MaintenanceMode | None) -> JobRecord:
        return self.maintenance.start(host, mode)

    def stop_maintenance(self, host: str) -> JobRecord:
        return self.maintenance.stop(host)

    def refresh(self, target: str = "") -> JobRecord:
        if not target:
            names = [h.name for h in self.store.list_hosts()]
            label = "every host"
        elif (cluster := self.store.get_cluster(target)) is not None:
            names = list(cluster.nodes)
            label = f"cluster {target}"
        elif self.store.get_host(target) is not None:
            names = [target]
            label = f"host {target}"
        else:
            raise NotFoundError(f"no cluster or host is named {target}")

        async def work(job: JobHandle) -> str:
            job.progress(10, f"Asking {len(names)} host(s) for their inventory")
            results = await self.refresher.refresh(names)
            failed = [r for r in results if not r.ok]
            if failed and len(failed) == len(results):
                raise_unavailable(label, failed)
            summary = f"Refreshed {label}: {len(results) - len(failed)} of {len(results)} host(s) ok"
            if failed:
                summary += "; not responding: " + "; ".join(f"{r.host} ({r.reason})" for r in failed)
            return summary

        return self.jobs.start("refresh", target or "all", f"Refreshing {label}", work)

    def repair_vm(self, name: str, action: RepairAction) -> tuple[JobRecord, VmRecord]:
        return self.repairs.repair(name, action)

    def failover_threshold(self, vm: VmRecord) -> int:
        """The failover threshold in force for `vm` (its policy's, else nodes - 1)."""
        host = self.store.get_host(vm.host) if vm.host else None
        cluster = self.store.get_cluster(host.cluster) if host is not None and host.cluster else None
        return effective_max_failovers(vm.policy, len(cluster.nodes) if cluster is not None else 0)

    def create_vm(self, command: CreateVmCommand) -> tuple[JobRecord, VmRecord]:
        return self.vms.create(command)

    def operate_vm(self, name: str, operation: VmOperation | None) -> JobRecord:
        return self.vms.operate(name, operation)

    def delete_vm(self, name: str) -> JobRecord:
        return self.vms.delete(name)

    def convert_disk(self, name: str, disk: StorageLocation | None) -> JobRecord:
        return self.conversions.convert(name, disk)

    def update_vm(
        self, name: str, change: SettingsChange, policy: FailoverPolicy | None = None
    ) -> tuple[JobRecord, VmRecord]:
        if policy is not None:
            job, vm = self.policies.update(name, policy)
            if change.empty:
                return job, vm
        return self.vms.update(name, change)

    async def migrate_vm(
        self,
        name: str,
        host: str,
        quick: bool = False,
        no_converge: str | None = None,
        transfer: Transfer = Transfer.AUTO,
        make_ha: bool = False,
        storage: StorageLocation | None = None,
    ) -> tuple[JobRecord, MigrationRecord]:
        return await self.migrations.migrate(name, host, quick, no_converge, transfer, make_ha, storage)

    async def migrate_vm_storage(
        self, name: str, host: str, storage: StorageLocation | None
    ) -> tuple[JobRecord, MigrationRecord]:
        return await self.migrations.migrate_storage(name, host, storage)

    async def store_vm(
        self, name: str, library: str, transfer: Transfer
    ) -> tuple[JobRecord, MigrationRecord]:
        return await self.migrations.store(name, library, transfer)

    async def deploy_vm(
        self, name: str, host: str, transfer: Transfer, make_ha: bool, storage: StorageLocation | None
    ) -> tuple[JobRecord, MigrationRecord]:
        return await self.migrations.deploy(name, host, transfer, make_ha, storage)

    def list_migrations(self, limit: int = 0) -> list[MigrationRecord]:
        return self.migrations.list(limit)

    def get_migration(self, migration_id: str) -> MigrationRecord:
        return self.migrations.get(migration_id)


def raise_unavailable(label: str, failed: list[HostRefresh]) -> None:
    reasons = "; ".join(f"{r.host}: {r.reason}" for r in failed)
    raise UnavailableError(f"refreshing {label} failed: no host answered ({reasons})")

"""Translation between havm.v1 messages and the manager's records, both directions.

Enum names follow one pattern on each side (VM_STATE_RUNNING <-> VmState.RUNNING),
so the maps are built from the names rather than written out by hand.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from enum import Enum
from typing import TypeVar, cast

from google.protobuf.timestamp_pb2 import Timestamp

from havm.contract.hosts import CpuSpec
from havm.v1 import agent_pb2, common_pb2, manager_pb2
from manager.core.capacity import ReserveReport
from manager.core.cluster_config import ClusterNetwork
from manager.core.cluster_groups import ClusterGroup
from manager.core.config_status import StatusReason
from manager.core.host_choice import RatingsView
from manager.core.migration_phase import MigrationPhase
from manager.core.model import (
    ClusterRecord,
    ClusterResource,
    DataDisk,
    DiskInfo,
    Event,
    FailoverPolicy,
    HostRecord,
    Inventory,
    JobRecord,
    MigrationProgress,
    MigrationRecord,
    NetworkInfo,
    ReportedVm,
    StorageKind,
    StorageLocation,
    TransferProgress,
    VmOperation,
    VmRecord,
    VolumeInfo,
    Workload,
)
from manager.core.profiles import HostCapabilities, profile_capabilities
from manager.core.states import VmState

E = TypeVar("E", bound=Enum)
P = TypeVar("P", bound=int)


def to_proto_enum(value: Enum, prefix: str, wrapper: type[P]) -> P:
    # The generated .pyi declares each proto enum as an int subclass whose members are
    # typed as that class; at run time `wrapper` is protobuf's EnumTypeWrapper.
    return cast(P, wrapper.Value(f"{prefix}_{value.name}"))  # type: ignore[attr-defined]


def from_proto_enum(number: int, prefix: str, wrapper: object, enum: type[E]) -> E | None:
    """The enum member a wire value names; None for a value of no member (an open enum
    keeps numbers it does not know: the caller says what the field accepts)."""
    try:
        name = wrapper.Name(number)  # type: ignore[attr-defined]
    except ValueError:
        return None
    member = name.removeprefix(prefix + "_")
    return enum.__members__.get(member)


PROFILE_TO_PROTO = {
    "hyperv-2008": common_pb2.PROFILE_HYPERV_2008,
    "hyperv-2008r2": common_pb2.PROFILE_HYPERV_2008R2,
    "esx": common_pb2.PROFILE_ESX,
    "library": common_pb2.PROFILE_LIBRARY,
}
PROFILE_FROM_PROTO = {v: k for k, v in PROFILE_TO_PROTO.items()}
NETWORK_KIND_TO_PROTO = {
    "virtual_network": common_pb2.NETWORK_KIND_VIRTUAL_NETWORK,
    "port_group": common_pb2.NETWORK_KIND_PORT_GROUP,
}
NETWORK_KIND_FROM_PROTO = {v: k for k, v in NETWORK_KIND_TO_PROTO.items()}


def timestamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(value.astimezone(UTC))
    return ts


# --- core -> proto -------------------------------------------------------------------


def vm_state_to_proto(state: VmState) -> common_pb2.VmState:
    # The wire has no `creating`: a VM being created is on its way to running.
    if state is VmState.CREATING:
        return common_pb2.VM_STATE_STARTING
    return to_proto_enum(state, "VM_STATE", common_pb2.VmState)


def storage_kind_to_proto(kind: StorageKind) -> common_pb2.StorageKind:
    return to_proto_enum(kind, "STORAGE_KIND", common_pb2.StorageKind)


def storage_to_proto(storage: StorageLocation | None) -> common_pb2.StorageLocation | None:
    if storage is None:
        return None
    return common_pb2.StorageLocation(kind=storage_kind_to_proto(storage.kind), name=storage.name)


def storages_to_proto(storages: Sequence[StorageLocation]) -> list[common_pb2.StorageLocation]:
    return [common_pb2.StorageLocation(kind=storage_kind_to_proto(s.kind), name=s.name) for s in storages]


def cluster_resources_to_proto(resources: Sequence[ClusterResource]) -> list[common_pb2.ClusterResource]:
    return [common_pb2.ClusterResource(name=r.name, type=r.type) for r in resources]


def cpu_to_proto(cpu: CpuSpec) -> common_pb2.Cpu:
    return common_pb2.Cpu(
        vendor=cpu.vendor, model=cpu.model, features=cpu.features, cores=cpu.cores, mhz=cpu.mhz
    )


def volume_to_proto(volume: VolumeInfo) -> common_pb2.SharedVolume:
    return common_pb2.SharedVolume(
        name=volume.name,
        kind=storage_kind_to_proto(volume.kind),
        capacity_bytes=volume.capacity_bytes,
        free_bytes=volume.free_bytes,
    )


def capabilities_to_proto(capabilities: HostCapabilities) -> common_pb2.HostCapabilities:
    return common_pb2.HostCapabilities(
        live_migration=capabilities.live_migration,
        quick_migration=capabilities.quick_migration,
        csv=capabilities.csv,
        network_kind=NETWORK_KIND_TO_PROTO.get(
            capabilities.network_kind, common_pb2.NETWORK_KIND_UNSPECIFIED
        ),
        library_server=capabilities.library_server,
    )


def host_to_proto(host: HostRecord, vm_count: int, rating: float) -> manager_pb2.Host:
    return manager_pb2.Host(
        name=host.name,
        cluster=host.cluster or "",
        profile=PROFILE_TO_PROTO.get(host.profile, common_pb2.PROFILE_UNSPECIFIED),
        state=to_proto_enum(host.state, "HOST_STATE", manager_pb2.HostState),
        address=host.address or "",
        cpu=cpu_to_proto(host.cpu),
        memory_mb=host.memory_mb,
        memory_free_mb=host.memory_free_mb,
        vm_count=vm_count,
        disks=[
            common_pb2.LocalDisk(name=d.name, capacity_bytes=d.capacity_bytes, free_bytes=d.free_bytes)
            for d in host.disks
        ],
        networks=[
            common_pb2.Network(
                name=n.name,
                kind=NETWORK_KIND_TO_PROTO.get(n.kind, common_pb2.NETWORK_KIND_UNSPECIFIED),
                bound_to=n.bound_to,
                vlan_id=n.vlan_id,
            )
            for n in host.networks
        ],
        volumes=[volume_to_proto(v) for v in host.volumes],
        rating=rating,
        last_refresh=timestamp(host.last_refresh),
        state_reason=host.state_reason,
        added_at_runtime=host.added_at_runtime,
        capabilities=capabilities_to_proto(host.capabilities),
        capabilities_reported=host.reported_capabilities is not None,
    )


def cluster_network_to_proto(net: ClusterNetwork) -> manager_pb2.ClusterNetwork:
    return manager_pb2.ClusterNetwork(
        name=net.name,
        kind=NETWORK_KIND_TO_PROTO.get(net.kind, common_pb2.NETWORK_KIND_UNSPECIFIED),
        common=net.common,
        vlan_id=net.vlan_id,
        bound_to=net.bound_to,
        missing_on=net.missing_on,
        differs_on=[manager_pb2.NetworkDifference(node=d.node, detail=d.detail) for d in net.differs_on],
    )


def status_reason_to_proto(reason: StatusReason) -> manager_pb2.StatusReason:
    return manager_pb2.StatusReason(
        cause=to_proto_enum(reason.cause, "CONFIG_CAUSE", manager_pb2.ConfigCause),
        detail=reason.detail,
        subject=reason.subject,
    )


def cluster_to_proto(
    cluster: ClusterRecord, report: ReserveReport, networks: Sequence[ClusterNetwork] = ()
) -> manager_pb2.Cluster:
    over = report.overcommit
    return manager_pb2.Cluster(
        name=cluster.name,
        profile=PROFILE_TO_PROTO.get(cluster.profile, common_pb2.PROFILE_UNSPECIFIED),
        nodes=cluster.nodes,
        reserve=cluster.reserve,
        datacenter=cluster.datacenter or "",
        state=to_proto_enum(report.state, "CLUSTER_STATE", manager_pb2.ClusterState),
        volumes=[volume_to_proto(v) for v in cluster.volumes],
        overcommit=(
            manager_pb2.Overcommit(
                failed_nodes=over.failed_nodes, unplaced_vms=over.unplaced_vms, detail=over.detail
            )
            if over is not None
            else None
        ),
        networks=[cluster_network_to_proto(n) for n in networks],
    )


def ratings_to_proto(view: RatingsView) -> manager_pb2.RateHostsResponse:
    return manager_pb2.RateHostsResponse(
        ratings=[
            manager_pb2.HostRating(
                host=r.host,
                cluster=r.cluster or "",
                stars=r.stars,
                reasons=[
                    manager_pb2.HostRatingReason(
                        code=to_proto_enum(n.code, "RATING_REASON", manager_pb2.RatingReason),
                        detail=n.detail,
                        blocking=n.blocking,
                    )
                    for n in r.notes
                ],
                storage=storage_to_proto(r.storage),
            )
            for r in view.ratings
        ],
        best_host=view.best_host or "",
        goal=to_proto_enum(view.goal, "PLACEMENT_GOAL", manager_pb2.PlacementGoal),
    )


def policy_to_proto(policy: FailoverPolicy) -> manager_pb2.FailoverPolicy:
    start, end = policy.failback_window or (0, 0)
    pb = manager_pb2.FailoverPolicy(
        preferred_owners=policy.preferred_owners,
        possible_owners=policy.possible_owners,
        failover_period_s=policy.failover_period_s,
        failback=to_proto_enum(policy.failback, "FAILBACK_MODE", manager_pb2.FailbackMode),
        failback_window_start_hour=start,
        failback_window_end_hour=end,
    )
    if policy.max_failovers is not None:
        pb.max_failovers = policy.max_failovers
    return pb


def _incident_to_proto(vm: VmRecord) -> manager_pb2.Incident | None:
    if vm.incident is None:
        return None
    return manager_pb2.Incident(
        kind=to_proto_enum(vm.incident.kind, "INCIDENT_KIND", manager_pb2.IncidentKind),
        time=timestamp(vm.incident.time),
        hosts=vm.incident.hosts,
        detail=vm.incident.detail,
    )


def vm_to_proto(vm: VmRecord, effective_max_failovers: int = 0, path: str = "") -> manager_pb2.Vm:
    """`effective_max_failovers` is the threshold in force (it depends on the cluster);
    `path` where its files are as its host addresses them (core.cluster_groups)."""
    return manager_pb2.Vm(
        id=vm.id,
        name=vm.name,
        host=vm.host or "",
        state=vm_state_to_proto(vm.state),
        highly_available=vm.highly_available,
        status=to_proto_enum(vm.status, "VM_CONFIG_STATUS", common_pb2.VmConfigStatus),
        status_reasons=[status_reason_to_proto(r) for r in vm.status_reasons],
        ignored_reasons=[status_reason_to_proto(r) for r in vm.ignored_reasons],
        passthrough_disks=storages_to_proto(vm.passthrough_disks),
        iso_image=vm.iso_image,
        cluster_resources=cluster_resources_to_proto(vm.cluster_resources),
        data_disks=data_disks_to_proto(vm.data_disks),
        path=path,
        memory_mb=vm.memory_mb,
        cpus=vm.cpus,
        disk_gb=vm.disk_gb,
        storage=storage_to_proto(vm.storage),
        networks=vm.networks,
        imported=vm.imported,
        created_at=timestamp(vm.created_at),
        reason=vm.reason,
        restart_priority=to_proto_enum(vm.restart_priority, "RESTART_PRIORITY", common_pb2.RestartPriority),
        failover_count=vm.failover_count,
        processor_compatibility=vm.processor_compatibility,
        migration_id=vm.migration_id or "",
        failover_policy=policy_to_proto(vm.policy),
        recent_failovers=[timestamp(t) for t in vm.failover_times],
        failed_action=(
            to_proto_enum(vm.failed_action, "FAILED_ACTION", manager_pb2.FailedAction)
            if vm.failed_action is not None
            else manager_pb2.FAILED_ACTION_UNSPECIFIED
        ),
        last_incident=_incident_to_proto(vm),
        effective_max_failovers=effective_max_failovers,
    )


def job_to_proto(job: JobRecord) -> manager_pb2.Job:
    return manager_pb2.Job(
        steps=[
            manager_pb2.JobStep(
                vm=step.vm,
                outcome=to_proto_enum(step.outcome, "JOB_STEP_OUTCOME", manager_pb2.JobStepOutcome),
                host=step.host,
                detail=step.detail,
            )
            for step in job.steps
        ],
        id=job.id,
        kind=job.kind,
        target=job.target,
        state=to_proto_enum(job.state, "JOB_STATE", manager_pb2.JobState),
        progress=job.progress,
        message=job.message,
        error=job.error,
        created_at=timestamp(job.created_at),
        updated_at=timestamp(job.updated_at),
    )


def vm_spec_to_proto(vm: VmRecord) -> common_pb2.VmSpec:
    return common_pb2.VmSpec(
        id=vm.id,
        name=vm.name,
        memory_mb=vm.memory_mb,
        cpus=vm.cpus,
        disk_gb=vm.disk_gb,
        storage=storage_to_proto(vm.storage),
        networks=vm.networks,
        highly_available=vm.highly_available,
        workload=workload_to_proto(vm.workload),
        processor_compatibility=vm.processor_compatibility,
        passthrough_disks=storages_to_proto(vm.passthrough_disks),
        iso_image=vm.iso_image,
        cluster_resources=cluster_resources_to_proto(vm.cluster_resources),
        data_disks=data_disks_to_proto(vm.data_disks),
    )


def workload_from_proto(pb: common_pb2.GuestWorkload) -> Workload:
    """Unset rates stay None: the agent then applies its defaults."""
    return Workload(
        pb.dirty_rate_mb_per_s if pb.HasField("dirty_rate_mb_per_s") else None,
        pb.journal_writes_per_s if pb.HasField("journal_writes_per_s") else None,
    )


def workload_to_proto(workload: Workload) -> common_pb2.GuestWorkload:
    return common_pb2.GuestWorkload(
        dirty_rate_mb_per_s=workload.dirty_rate_mb_per_s,
        journal_writes_per_s=workload.journal_writes_per_s,
    )


def operation_to_proto(operation: VmOperation) -> agent_pb2.VmOperation:
    return to_proto_enum(operation, "VM_OPERATION", agent_pb2.VmOperation)


# --- proto -> core -------------------------------------------------------------------


def storage_from_proto(storage: common_pb2.StorageLocation) -> StorageLocation | None:
    if storage.kind == common_pb2.STORAGE_KIND_UNSPECIFIED and not storage.name:
        return None
    try:
        kind = from_proto_enum(storage.kind, "STORAGE_KIND", common_pb2.StorageKind, StorageKind)
    except ValueError:
        kind = None
    if kind is None:
        return None
    return StorageLocation(kind, storage.name)


def reported_vm_from_proto(runtime: common_pb2.VmRuntime) -> ReportedVm:
    spec = runtime.spec
    try:
        state = from_proto_enum(runtime.state, "VM_STATE", common_pb2.VmState, VmState)
    except ValueError:
        state = None
    return ReportedVm(
        id=spec.id,
        name=spec.name,
        # A state the manager cannot interpret is one it does not know.
        state=state or VmState.UNKNOWN,
        memory_mb=spec.memory_mb,
        cpus=spec.cpus,
        disk_gb=spec.disk_gb,
        storage=storage_from_proto(spec.storage) if spec.HasField("storage") else None,
        networks=tuple(spec.networks),
        highly_available=spec.highly_available,
        workload=workload_from_proto(spec.workload),
        reason=runtime.reason,
        lease_generation=runtime.lease_generation,
        processor_compatibility=spec.processor_compatibility,
        cpu_vendor=runtime.cpu_vendor,
        cpu_features=tuple(runtime.cpu_features),
        migration_id=runtime.migration_id,
        passthrough_disks=tuple(s for s in map(storage_from_proto, spec.passthrough_disks) if s is not None),
        iso_image=spec.iso_image,
        cluster_resources=tuple(ClusterResource(r.name, r.type) for r in spec.cluster_resources),
        data_disks=tuple(d for d in map(data_disk_from_proto, spec.data_disks) if d is not None),
    )


def data_disk_from_proto(pb: common_pb2.DataDisk) -> DataDisk | None:
    """A data disk as its host reports it; None for one whose origin this manager cannot read."""
    origin = storage_from_proto(pb.converted_from)
    return DataDisk(pb.file, pb.size_bytes, origin) if origin is not None else None


def data_disks_to_proto(disks: tuple[DataDisk, ...]) -> list[common_pb2.DataDisk]:
    return [
        common_pb2.DataDisk(
            file=d.file, size_bytes=d.size_bytes, converted_from=storage_to_proto(d.converted_from)
        )
        for d in disks
    ]


def capabilities_from_proto(pb: common_pb2.HostCapabilities, profile: str) -> HostCapabilities:
    """What the agent reported; a network kind it left unset is its profile's."""
    return HostCapabilities(
        live_migration=pb.live_migration,
        quick_migration=pb.quick_migration,
        csv=pb.csv,
        network_kind=NETWORK_KIND_FROM_PROTO.get(pb.network_kind, profile_capabilities(profile).network_kind),
        library_server=pb.library_server,
    )


def inventory_from_proto(response: agent_pb2.AgentServiceGetInventoryResponse) -> Inventory:
    info = response.host
    profile = PROFILE_FROM_PROTO.get(info.profile, "")
    # An agent that predates capabilities reports none: the manager goes by the profile.
    capabilities = None
    if info.HasField("capabilities"):
        capabilities = capabilities_from_proto(info.capabilities, profile)
    network_kind = (capabilities or profile_capabilities(profile)).network_kind
    volumes = []
    for v in info.volumes:
        kind = storage_from_proto(common_pb2.StorageLocation(kind=v.kind, name=v.name))
        if kind is not None and kind.kind is not StorageKind.LOCAL_DISK:
            volumes.append(VolumeInfo(v.name, kind.kind, v.capacity_bytes, v.free_bytes))
    return Inventory(
        host_name=info.name,
        cluster=info.cluster or None,
        profile=profile,
        cpu=CpuSpec(info.cpu.vendor, info.cpu.model, tuple(info.cpu.features), info.cpu.cores, info.cpu.mhz),
        memory_mb=info.memory_mb,
        memory_free_mb=info.memory_free_mb,
        disks=tuple(DiskInfo(d.name, d.capacity_bytes, d.free_bytes) for d in info.disks),
        networks=tuple(
            NetworkInfo(n.name, NETWORK_KIND_FROM_PROTO.get(n.kind, network_kind), n.bound_to, n.vlan_id)
            for n in info.networks
        ),
        volumes=tuple(volumes),
        boot_id=info.boot_id,
        vms=tuple(reported_vm_from_proto(vm) for vm in response.vms),
        capabilities=capabilities,
    )


def event_to_proto(event: Event) -> manager_pb2.Event:
    return manager_pb2.Event(
        time=timestamp(event.time),
        kind=event.kind,
        host=event.host,
        vm=event.vm,
        detail=event.detail,
        cluster=event.cluster,
        old_state=event.old_state,
        new_state=event.new_state,
    )


# The source agent's live-migration phases, as the manager records them.
_AGENT_PHASES = {
    agent_pb2.MIGRATION_PHASE_PREPARING: MigrationPhase.PREPARING,
    agent_pb2.MIGRATION_PHASE_DISK_COPY: MigrationPhase.DISK_COPY,
    agent_pb2.MIGRATION_PHASE_PRE_COPY: MigrationPhase.PRE_COPY,
    agent_pb2.MIGRATION_PHASE_BLACKOUT: MigrationPhase.BLACKOUT,
    agent_pb2.MIGRATION_PHASE_COMPLETED: MigrationPhase.COMPLETED,
}


def migration_progress_from_proto(pb: agent_pb2.AgentServiceMigrateVmResponse) -> MigrationProgress:
    return MigrationProgress(
        phase=_AGENT_PHASES.get(pb.phase),  # None: a newer agent's phase
        passes=getattr(pb, "pass"),  # a Python keyword as a field name
        bytes_sent=pb.bytes_sent,
        bytes_remaining=pb.bytes_remaining,
        mb_per_s=pb.mb_per_s,
        duration_ms=pb.duration_ms,
        blackout_ms=pb.blackout_ms,
        memory_digest=pb.memory_digest,
        resumed_digest=pb.resumed_digest,
        vm=reported_vm_from_proto(pb.vm) if pb.HasField("vm") else None,
    )


def migration_to_proto(m: MigrationRecord) -> manager_pb2.Migration:
    return manager_pb2.Migration(
        id=m.id,
        vm=m.vm_name,
        vm_id=m.vm_id,
        kind=to_proto_enum(m.kind, "MIGRATION_KIND", manager_pb2.MigrationKind),
        state=to_proto_enum(m.state, "MIGRATION_STATE", manager_pb2.MigrationState),
        source=m.source,
        destination=m.destination,
        storage=storage_to_proto(m.storage),
        job_id=m.job_id,
        passes=m.passes,
        bytes=m.bytes_sent,
        bytes_remaining=m.bytes_remaining,
        mb_per_s=m.mb_per_s,
        duration_ms=m.duration_ms,
        blackout_ms=m.blackout_ms,
        error=m.error,
        fell_back_to_quick=m.fell_back_to_quick,
        created_at=timestamp(m.created_at),
        updated_at=timestamp(m.updated_at),
        phase=m.phase.value,
        manager_phase=to_proto_enum(m.phase, "MANAGER_MIGRATION_PHASE", manager_pb2.ManagerMigrationPhase),
        memory_digest=m.memory_digest,
        resumed_digest=m.resumed_digest,
        bytes_total=m.bytes_total,
        highly_available_after=bool(m.highly_available_after),
    )


def transfer_progress_from_proto(pb: agent_pb2.AgentServiceSendVmResponse) -> TransferProgress:
    return TransferProgress(
        bytes_sent=pb.bytes_sent,
        bytes_total=pb.bytes_total,
        mb_per_s=pb.mb_per_s,
        vm=reported_vm_from_proto(pb.vm) if pb.HasField("vm") else None,
        duration_ms=pb.duration_ms,
    )


def cluster_group_to_proto(group: ClusterGroup) -> manager_pb2.ClusterGroup:
    return manager_pb2.ClusterGroup(
        name=group.name,
        vm=group.vm,
        owner_node=group.owner_node,
        resources=[
            manager_pb2.ClusterGroupResource(
                name=r.name,
                kind=to_proto_enum(r.kind, "CLUSTER_RESOURCE_KIND", manager_pb2.ClusterResourceKind),
                type=r.type,
                online_on=r.online_on,
                path=r.path,
            )
            for r in group.resources
        ],
    )

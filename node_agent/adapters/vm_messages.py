"""A VM's configuration and runtime as wire messages, and back.

Every message that carries a VM (CreateVm, GetInventory, a migration's offer, the
HostAdminService's answers) is built and read here, so that a field added to VmSpec is
translated in one place. A malformed message becomes an InvalidArgument naming the field.
"""

from __future__ import annotations

from collections.abc import Iterable

from google.protobuf.timestamp_pb2 import Timestamp

from havm.v1 import common_pb2
from node_agent.core.cpu import GuestCpu
from node_agent.core.errors import InvalidArgument
from node_agent.core.power import PowerState
from node_agent.core.views import VmView
from node_agent.core.vm import ClusterResource, DataDisk, StorageKind, StorageRef, VmSpec, Workload

STATES = {
    PowerState.STOPPED: common_pb2.VM_STATE_STOPPED,
    PowerState.STARTING: common_pb2.VM_STATE_STARTING,
    PowerState.RUNNING: common_pb2.VM_STATE_RUNNING,
    PowerState.PAUSED: common_pb2.VM_STATE_PAUSED,
    PowerState.SAVING: common_pb2.VM_STATE_SAVING,
    PowerState.SAVED: common_pb2.VM_STATE_SAVED,
    PowerState.FAILED: common_pb2.VM_STATE_FAILED,
    PowerState.MIGRATING: common_pb2.VM_STATE_MIGRATING,
}
STATES_FROM_PB = {v: k for k, v in STATES.items()}
STORAGE_TO_PB = {
    StorageKind.LOCAL_DISK: common_pb2.STORAGE_KIND_LOCAL_DISK,
    StorageKind.CSV: common_pb2.STORAGE_KIND_CSV,
    StorageKind.LUN: common_pb2.STORAGE_KIND_LUN,
}
STORAGE_FROM_PB = {v: k for k, v in STORAGE_TO_PB.items()}


def timestamp(unix_s: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(unix_s * 1e9))
    return ts


def spec_from_pb(pb: common_pb2.VmSpec) -> VmSpec:
    kind = STORAGE_FROM_PB.get(pb.storage.kind)
    if kind is None:
        raise InvalidArgument("spec.storage.kind: must be LOCAL_DISK, CSV or LUN")
    workload = None
    if pb.HasField("workload"):
        # A rate the caller left unset takes this host's default; 0 is a real rate.
        default = Workload()
        workload = Workload(
            pb.workload.dirty_rate_mb_per_s
            if pb.workload.HasField("dirty_rate_mb_per_s")
            else default.dirty_rate_mb_per_s,
            pb.workload.journal_writes_per_s
            if pb.workload.HasField("journal_writes_per_s")
            else default.journal_writes_per_s,
        )
    return VmSpec(
        id=pb.id,
        name=pb.name,
        memory_mb=pb.memory_mb,
        cpus=pb.cpus,
        disk_gb=pb.disk_gb,
        storage=StorageRef(kind, pb.storage.name),
        networks=tuple(pb.networks),
        highly_available=pb.highly_available,
        workload=workload,
        processor_compatibility=pb.processor_compatibility,
        passthrough_disks=passthrough_from_pb(pb.passthrough_disks, "spec.passthrough_disks"),
        iso_image=pb.iso_image,
        cluster_resources=tuple(resource_from_pb(r) for r in pb.cluster_resources),
        data_disks=tuple(data_disk_from_pb(d, i) for i, d in enumerate(pb.data_disks)),
    )


def data_disk_from_pb(pb: common_pb2.DataDisk, index: int) -> DataDisk:
    kind = STORAGE_FROM_PB.get(pb.converted_from.kind)
    if kind is None:
        raise InvalidArgument(f"spec.data_disks[{index}].converted_from.kind: must be LOCAL_DISK or LUN")
    return DataDisk(pb.file, pb.size_bytes, StorageRef(kind, pb.converted_from.name))


def spec_to_pb(spec: VmSpec) -> common_pb2.VmSpec:
    pb = common_pb2.VmSpec(
        id=spec.id,
        name=spec.name,
        memory_mb=spec.memory_mb,
        cpus=spec.cpus,
        disk_gb=spec.disk_gb,
        storage=storage_to_pb(spec.storage),
        networks=list(spec.networks),
        highly_available=spec.highly_available,
        processor_compatibility=spec.processor_compatibility,
        passthrough_disks=[storage_to_pb(d) for d in spec.passthrough_disks],
        iso_image=spec.iso_image,
        cluster_resources=[resource_to_pb(r) for r in spec.cluster_resources],
        data_disks=[
            common_pb2.DataDisk(
                file=d.file, size_bytes=d.size_bytes, converted_from=storage_to_pb(d.converted_from)
            )
            for d in spec.data_disks
        ],
    )
    if spec.workload is not None:
        pb.workload.CopyFrom(
            common_pb2.GuestWorkload(
                dirty_rate_mb_per_s=spec.workload.dirty_rate_mb_per_s,
                journal_writes_per_s=spec.workload.journal_writes_per_s,
            )
        )
    return pb


def vm_to_pb(vm: VmView) -> common_pb2.VmRuntime:
    return common_pb2.VmRuntime(
        spec=spec_to_pb(vm.spec),
        state=STATES[vm.state],
        reason=vm.reason,
        state_since=timestamp(vm.state_since),
        lease_generation=vm.lease_generation,
        cpu_vendor=vm.cpu.vendor if vm.cpu is not None else "",
        cpu_features=list(vm.cpu.features) if vm.cpu is not None else [],
        migration_id=vm.migration_id,
    )


def vm_from_pb(pb: common_pb2.VmRuntime) -> VmView:
    return VmView(
        spec=spec_from_pb(pb.spec),
        state=STATES_FROM_PB.get(pb.state, PowerState.FAILED),
        reason=pb.reason,
        state_since=pb.state_since.ToNanoseconds() / 1e9,
        lease_generation=pb.lease_generation,
        cpu=cpu_from_pb(pb.cpu_vendor, pb.cpu_features),
        migration_id=pb.migration_id,
    )


def cpu_from_pb(vendor: str, features: Iterable[str]) -> GuestCpu | None:
    return GuestCpu(vendor, tuple(features)) if vendor else None


def storage_to_pb(storage: StorageRef) -> common_pb2.StorageLocation:
    return common_pb2.StorageLocation(kind=STORAGE_TO_PB[storage.kind], name=storage.name)


def storage_from_pb(pb: common_pb2.StorageLocation, field: str) -> StorageRef:
    kind = STORAGE_FROM_PB.get(pb.kind)
    if kind is None:
        raise InvalidArgument(f"{field}.kind: must be LOCAL_DISK, CSV or LUN")
    if not pb.name:
        raise InvalidArgument(f"{field}.name: must name a local disk, CSV volume or LUN")
    return StorageRef(kind, pb.name)


def passthrough_from_pb(pbs: Iterable[common_pb2.StorageLocation], field: str) -> tuple[StorageRef, ...]:
    """Pass-through disks as sent; whether each may be one is core.vm_devices' to judge."""
    disks: list[StorageRef] = []
    for i, pb in enumerate(pbs):
        kind = STORAGE_FROM_PB.get(pb.kind)
        if kind is None:
            raise InvalidArgument(f"{field}[{i}].kind: must be LUN or LOCAL_DISK")
        disks.append(StorageRef(kind, pb.name))
    return tuple(disks)


def resource_to_pb(resource: ClusterResource) -> common_pb2.ClusterResource:
    return common_pb2.ClusterResource(name=resource.name, type=resource.type)


def resource_from_pb(pb: common_pb2.ClusterResource) -> ClusterResource:
    return ClusterResource(pb.name, pb.type)

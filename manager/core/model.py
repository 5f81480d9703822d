"""The manager's records: hosts, clusters, VMs and jobs as plain frozen dataclasses.

These are what the store keeps and what every decision function reads. They know
nothing of protobuf or SQL; the adapters translate them at the edges.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

from havm.contract.hosts import CpuSpec
from manager.core.config_status import ConfigStatus, StatusReason
from manager.core.migration_phase import MigrationPhase
from manager.core.profiles import HostCapabilities, profile_capabilities
from manager.core.states import HostState, JobState, MigrationState, VmState

GIB = 1024**3


class StorageKind(Enum):
    LOCAL_DISK = "local_disk"  # a local disk of the host; only that host sees it
    CSV = "csv"  # a cluster shared volume: every node uses it at once
    LUN = "lun"  # a shared LUN: visible to several hosts, used by one VM at a time


class RestartPriority(Enum):
    """Order in which highly available VMs of a failed host restart elsewhere."""

    HIGH = "high"  # restarted first
    MEDIUM = "medium"  # the default
    LOW = "low"  # restarted after the others
    NONE = "none"  # never restarted automatically


# Restart order: a lower rank restarts first.
RESTART_RANK = {RestartPriority.HIGH: 0, RestartPriority.MEDIUM: 1, RestartPriority.LOW: 2}


class FailbackMode(Enum):
    """When a VM moves back to its most preferred owner once that node returns."""

    NEVER = "never"  # it stays where failover put it (Windows Server 2008 R2's default)
    IMMEDIATE = "immediate"  # as soon as the node is back
    WINDOW = "window"  # only between the window's hours (the manager's local time)


# Windows Server 2008 R2 allows a group n-1 failovers in 6 hours (n = nodes of the cluster).
DEFAULT_FAILOVER_PERIOD_S = 6 * 3600


@dataclass(frozen=True)
class FailoverPolicy:
    """The failover cluster's group properties of one highly available VM."""

    # Tried first, in this order, for a restart, a placement or a failback.
    preferred_owners: tuple[str, ...] = ()
    # The only nodes it may run on; empty means every node of its cluster.
    possible_owners: tuple[str, ...] = ()
    # At most this many failovers in `failover_period_s`; None means nodes - 1.
    max_failovers: int | None = None
    failover_period_s: int = DEFAULT_FAILOVER_PERIOD_S
    failback: FailbackMode = FailbackMode.NEVER
    # (first hour, end hour), 0-23, for FailbackMode.WINDOW; 22-6 spans midnight.
    failback_window: tuple[int, int] | None = None

    def may_run_on(self, host: str) -> bool:
        return not self.possible_owners or host in self.possible_owners


class FailedAction(Enum):
    """What failed when a VM is `failed`: what `repair --retry` runs again."""

    FAILOVER = "failover"  # the restart after its host failed, on every node tried
    THRESHOLD = "threshold"  # its failover threshold was reached: left failed on purpose
    START = "start"  # an operator's start or restore
    REPORTED = "reported"  # its host reported it failed


class IncidentKind(Enum):
    DUPLICATE_COPY = "duplicate_copy"  # it ran on two hosts; the stale copy was stopped


@dataclass(frozen=True)
class Incident:
    """Something that went wrong with a VM and what the manager did about it."""

    kind: IncidentKind
    time: datetime
    hosts: tuple[str, ...]  # the hosts involved, the one kept first
    detail: str  # a sentence


class VmOperation(Enum):
    START = "start"  # power on a stopped VM, or restore a saved one
    SHUTDOWN = "shutdown"  # ask the guest to shut down cleanly
    TURN_OFF = "turn_off"  # pull the power
    SAVE = "save"  # write the memory image to storage and release the memory
    RESTORE = "restore"  # start a saved VM from its memory image
    PAUSE = "pause"
    RESUME = "resume"


@dataclass(frozen=True)
class DiskInfo:
    name: str
    capacity_bytes: int
    free_bytes: int


@dataclass(frozen=True)
class NetworkInfo:
    name: str
    kind: str  # "virtual_network" (Hyper-V) | "port_group" (ESX)
    bound_to: str
    vlan_id: int


@dataclass(frozen=True)
class VolumeInfo:
    name: str
    kind: StorageKind  # CSV or LUN
    capacity_bytes: int
    free_bytes: int


@dataclass(frozen=True)
class StorageLocation:
    kind: StorageKind
    name: str


@dataclass(frozen=True)
class DataDisk:
    """A virtual disk of a VM beside its system disk: a pass-through disk it converted
    (`vm convert-disk`), a file in the VM's directory that moves with its files."""

    file: str
    size_bytes: int
    converted_from: StorageLocation


@dataclass(frozen=True)
class ClusterResource:
    """A resource an administrator added to a highly available VM's cluster group."""

    name: str
    type: str


@dataclass(frozen=True)
class Workload:
    """Guest activity; None leaves the rate to the agent's default."""

    dirty_rate_mb_per_s: float | None = None
    journal_writes_per_s: float | None = None


@dataclass(frozen=True)
class HostRecord:
    """A host as the topology declares it and as its last inventory described it."""

    name: str
    cluster: str | None
    profile: str
    address: str | None
    cpu: CpuSpec
    memory_mb: int
    host_reserve_mb: int
    memory_free_mb: int
    disks: tuple[DiskInfo, ...]
    networks: tuple[NetworkInfo, ...]
    volumes: tuple[VolumeInfo, ...]
    state: HostState = HostState.NOT_RESPONDING
    state_reason: str = "not refreshed yet"
    last_refresh: datetime | None = None
    boot_id: str = ""
    # Where other agents stream migrations to this host; None means `address`.
    migration_address: str | None = None
    # Registered through AddHost rather than declared by the topology: a restarted
    # manager keeps it although the topology file does not name it.
    added_at_runtime: bool = False
    # The failure detector decided to fence this not-responding host. Stored with the
    # state, so that a manager that dies before it records `fencing` goes on from there
    # (never read from the reason's wording). Any other state change clears it.
    fence_decided: bool = False
    # What the host's agent last reported it can do; None until it has answered once.
    reported_capabilities: HostCapabilities | None = None

    @property
    def capabilities(self) -> HostCapabilities:
        """What the host can do: as its agent reported, else its profile's row."""
        if self.reported_capabilities is not None:
            return self.reported_capabilities
        return profile_capabilities(self.profile)


@dataclass(frozen=True)
class ClusterRecord:
    name: str
    profile: str
    reserve: int
    nodes: tuple[str, ...]
    volumes: tuple[VolumeInfo, ...]
    # Which nodes see each volume, from the topology: {volume name: node names}.
    visibility: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # The reserve was set through UpdateCluster: it outlives the topology's value.
    reserve_overridden: bool = False
    # ESX: the vCenter datacenter it belongs to; None for a cluster in none.
    datacenter: str | None = None

    def visible_to(self, volume: str) -> tuple[str, ...]:
        return dict(self.visibility).get(volume, ())

    def disk_names(self, kind: StorageKind) -> frozenset[str]:
        """Its cluster disks (LUN) or cluster shared volumes (CSV), by name."""
        return frozenset(v.name for v in self.volumes if v.kind is kind)


@dataclass(frozen=True)
class VmRecord:
    id: str
    name: str
    host: str | None
    state: VmState
    highly_available: bool
    memory_mb: int
    cpus: int
    disk_gb: int
    storage: StorageLocation | None
    networks: tuple[str, ...] = ()
    workload: Workload = field(default_factory=Workload)
    imported: bool = False
    created_at: datetime | None = None
    reason: str = ""
    # Judged by core.cluster_config whenever the record or its cluster changes.
    status: ConfigStatus = ConfigStatus.OK
    status_reasons: tuple[StatusReason, ...] = ()
    # Reasons `vm repair --ignore` accepted: they no longer make the VM unsupported.
    ignored_reasons: tuple[StatusReason, ...] = ()
    restart_priority: RestartPriority = RestartPriority.MEDIUM
    # Times the VM was restarted on another host after its host failed.
    failover_count: int = 0
    # The storage lease generation its current copy holds, as its host last reported.
    lease_generation: int = 0
    # Failover intent, persisted so that a restarted manager resumes it: the failed
    # host the VM is being taken from (None when no failover is pending)...
    failover_from: str | None = None
    # ...the host a restart was last attempted on (checked first on resume)...
    restart_target: str | None = None
    # ...and the attempts made so far, per host: ((host, attempts), ...).
    restart_attempts: tuple[tuple[str, int], ...] = ()
    # Processor compatibility mode: the guest sees only its vendor's baseline features.
    processor_compatibility: bool = False
    # The migration that is queued or running for this VM; None when none is.
    migration_id: str | None = None
    policy: FailoverPolicy = field(default_factory=FailoverPolicy)
    # When its recent failovers happened (those inside the policy's period).
    failover_times: tuple[datetime, ...] = ()
    # What failed, while the VM is `failed`; None otherwise.
    failed_action: FailedAction | None = None
    # The last incident (a duplicate copy resolved, ...); None when there was none.
    incident: Incident | None = None
    # An operator retried its failover (`vm repair --retry`): the threshold does not stop
    # that one restart.
    threshold_waived: bool = False
    # Disks handed to the guest whole: LUNs or local disks of its host.
    passthrough_disks: tuple[StorageLocation, ...] = ()
    # The ISO image in its DVD drive; empty when there is none.
    iso_image: str = ""
    # Resources an administrator added to its cluster group, as its host reports them.
    cluster_resources: tuple[ClusterResource, ...] = ()
    # Virtual disks beside its system disk: pass-through disks it converted.
    data_disks: tuple[DataDisk, ...] = ()

    def luns(self) -> tuple[str, ...]:
        """The LUNs it uses: the one its files are on, and those passed through to it."""
        disks = ((self.storage,) if self.storage is not None else ()) + self.passthrough_disks
        return tuple(d.name for d in disks if d.kind is StorageKind.LUN)


class JobStepOutcome(Enum):
    PENDING = "pending"  # not started yet
    RUNNING = "running"  # under way
    LIVE_MIGRATED = "live_migrated"  # live-migrated to the step's host
    SAVED = "saved"  # saved where it is
    QUICK_MIGRATED = "quick_migrated"  # saved and restored (or, at rest, moved) on the step's host
    RESTARTED = "restarted"  # shut down, moved and started on the step's host
    SHUT_DOWN = "shut_down"  # shut down where it is
    FAILED = "failed"  # see the detail
    NOT_ATTEMPTED = "not_attempted"  # an earlier step failed first


@dataclass(frozen=True)
class JobStep:
    """One VM's outcome in a job that works on several (maintenance mode)."""

    vm: str
    outcome: JobStepOutcome = JobStepOutcome.PENDING
    host: str = ""
    detail: str = ""


@dataclass(frozen=True)
class JobRecord:
    id: str
    kind: str  # "create_vm", "start_vm", "delete_vm", "refresh", ...
    target: str  # the VM, host or cluster the job works on
    state: JobState
    progress: int
    message: str
    error: str
    created_at: datetime
    updated_at: datetime
    steps: tuple[JobStep, ...] = ()
    # The client's id of the request that started the job ("" when it gave none): the
    # same request again finds this job instead of making the change twice.
    request_id: str = ""


@dataclass(frozen=True)
class ReportedVm:
    """A VM as an agent reports it in its inventory or after an operation."""

    id: str
    name: str
    state: VmState
    memory_mb: int
    cpus: int
    disk_gb: int
    storage: StorageLocation | None
    networks: tuple[str, ...]
    highly_available: bool
    workload: Workload = field(default_factory=Workload)
    reason: str = ""
    lease_generation: int = 0
    processor_compatibility: bool = False
    # The processor the guest was started with; empty while the VM is stopped.
    cpu_vendor: str = ""
    cpu_features: tuple[str, ...] = ()
    # Set while the VM is leaving or arriving on the host by migration.
    migration_id: str = ""
    passthrough_disks: tuple[StorageLocation, ...] = ()
    iso_image: str = ""
    cluster_resources: tuple[ClusterResource, ...] = ()
    data_disks: tuple[DataDisk, ...] = ()


@dataclass(frozen=True)
class Inventory:
    """What one GetInventory call returned: the host's description and its VMs."""

    host_name: str
    cluster: str | None
    profile: str
    cpu: CpuSpec
    memory_mb: int
    memory_free_mb: int
    disks: tuple[DiskInfo, ...]
    networks: tuple[NetworkInfo, ...]
    volumes: tuple[VolumeInfo, ...]
    boot_id: str
    vms: tuple[ReportedVm, ...]
    # None from an agent that does not report them.
    capabilities: HostCapabilities | None = None


@dataclass(frozen=True)
class CreateVmCommand:
    """A validated request to create a VM (defaults applied)."""

    name: str
    memory_mb: int
    cpus: int
    disk_gb: int
    highly_available: bool
    host: str | None
    storage: StorageLocation | None
    networks: tuple[str, ...]
    workload: Workload
    no_start: bool
    restart_priority: RestartPriority = RestartPriority.MEDIUM
    processor_compatibility: bool = False
    policy: FailoverPolicy = field(default_factory=FailoverPolicy)


@dataclass(frozen=True)
class Event:
    """Something that happened in the cluster, for WatchEvents and the MQTT event stream."""

    time: datetime
    kind: str  # "host_state", "vm_state", "detector", "failover", "broker"
    host: str
    vm: str
    detail: str  # a sentence
    cluster: str = ""  # the cluster a `cluster_state` event is about
    # A state change (`host_state`, `vm_state`, `cluster_state`): the states' values before
    # and after (`new` before a VM existed, `deleted` after it is gone); decisions read
    # these, never the sentence. Empty for other kinds.
    old_state: str = ""
    new_state: str = ""


class MigrationKind(Enum):
    LIVE = "live"  # memory copied while the guest runs; a blackout of milliseconds
    QUICK = "quick"  # saved to cluster storage, ownership moved, restored on the destination
    STORAGE = "storage"  # the VM's files move (and the VM with them when the host changes)
    # Across the cluster boundary, the VM stopped or saved (core.transfer):
    SAN_TRANSFER = "san_transfer"  # its LUN's ownership moves; no file bytes are copied
    NETWORK_TRANSFER = "network_transfer"  # its files are copied agent to agent


@dataclass(frozen=True)
class MigrationRecord:
    """One move of a VM, persisted so that a restarted manager can settle it."""

    id: str
    vm_id: str
    vm_name: str
    kind: MigrationKind
    state: MigrationState
    source: str
    destination: str
    created_at: datetime
    updated_at: datetime
    # Where the VM's files end up; None keeps them where they are.
    storage: StorageLocation | None = None
    job_id: str = ""
    # The lease generation the destination holds once the VM moved.
    lease_generation: int = 0
    # What the VM was doing when the migration began (a quick migration restores a
    # running or paused VM on the destination, and leaves a saved or stopped one so).
    vm_state_before: VmState = VmState.RUNNING
    # "fail" or "quick": what a live migration that cannot converge does.
    no_converge: str = "quick"
    # Where in its flow it is (the agent's phases for a live one, the step reached for
    # a quick one); a failed migration keeps the phase it failed in.
    phase: MigrationPhase = MigrationPhase.QUEUED
    passes: int = 0
    bytes_sent: int = 0
    bytes_remaining: int = 0
    mb_per_s: float = 0.0
    duration_ms: int = 0
    blackout_ms: int = 0
    error: str = ""
    fell_back_to_quick: bool = False
    memory_digest: str = ""
    resumed_digest: str = ""
    # When its flow began acting (left the queue), and when the guest stopped serving
    # (a quick migration's save began): its duration and downtime are measured from them,
    # also by a manager that settles the migration after a restart.
    started_at: datetime | None = None
    down_at: datetime | None = None
    # A transfer across the cluster boundary: whether the VM is highly available once
    # it arrived, and the bytes of its files to copy in all (a network transfer).
    highly_available_after: bool | None = None
    bytes_total: int = 0


@dataclass(frozen=True)
class MigrationProgress:
    """One message of a live migration stream, as the source agent sends it."""

    # PREPARING, DISK_COPY, PRE_COPY, BLACKOUT or COMPLETED; None for a phase a newer
    # agent reports that this manager does not know (the recorded phase stays).
    phase: MigrationPhase | None
    passes: int
    bytes_sent: int
    bytes_remaining: int
    mb_per_s: float
    duration_ms: int = 0
    blackout_ms: int = 0
    memory_digest: str = ""
    resumed_digest: str = ""
    vm: ReportedVm | None = None


@dataclass(frozen=True)
class LiveMigrationOrder:
    """What the manager asks the source agent to do (AgentService.MigrateVm)."""

    vm_id: str
    migration_id: str
    destination_host: str
    destination_address: str
    lease_generation: int
    max_passes: int
    blackout_budget_ms: int
    bandwidth_mb_per_s: float
    storage: StorageLocation | None = None
    # Follow the migration of this id on the source rather than start it (after a restart).
    reattach: bool = False


@dataclass(frozen=True)
class TransferOrder:
    """What the manager asks the source agent of a network transfer to do (AgentService.SendVm)."""

    transfer_id: str
    destination_host: str
    destination_address: str
    # The VM as the destination will hold it: its host, storage and HA flag there.
    vm: VmRecord
    lease_generation: int
    bandwidth_mb_per_s: float = 0.0


@dataclass(frozen=True)
class DiskConversionProgress:
    """One message of a disk conversion's stream, as the VM's host sends it."""

    bytes_copied: int
    bytes_total: int
    mb_per_s: float
    # On the last message only: the VM with its converted disk.
    vm: ReportedVm | None = None


@dataclass(frozen=True)
class TransferProgress:
    """One message of a network transfer stream, as the source agent sends it."""

    bytes_sent: int
    bytes_total: int
    mb_per_s: float
    # On the last message only: the VM as the destination holds it, and how long it took.
    vm: ReportedVm | None = None
    duration_ms: int = 0


@dataclass(frozen=True)
class StorageMoveResult:
    vm: ReportedVm
    bytes_copied: int
    duration_ms: int
    blackout_ms: int

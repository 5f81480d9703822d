import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from havm.v1 import agent_pb2 as _agent_pb2
from havm.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class HostState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HOST_STATE_UNSPECIFIED: _ClassVar[HostState]
    HOST_STATE_OK: _ClassVar[HostState]
    HOST_STATE_SUSPECT: _ClassVar[HostState]
    HOST_STATE_ISOLATED: _ClassVar[HostState]
    HOST_STATE_NOT_RESPONDING: _ClassVar[HostState]
    HOST_STATE_FENCING: _ClassVar[HostState]
    HOST_STATE_FENCED: _ClassVar[HostState]
    HOST_STATE_MAINTENANCE: _ClassVar[HostState]
    HOST_STATE_STOPPING: _ClassVar[HostState]
    HOST_STATE_STOPPED: _ClassVar[HostState]

class ClusterState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CLUSTER_STATE_UNSPECIFIED: _ClassVar[ClusterState]
    CLUSTER_STATE_OK: _ClassVar[ClusterState]
    CLUSTER_STATE_OVERCOMMITTED: _ClassVar[ClusterState]

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_COMPLETED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]

class ConfigCause(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONFIG_CAUSE_UNSPECIFIED: _ClassVar[ConfigCause]
    CONFIG_CAUSE_STANDALONE_HOST: _ClassVar[ConfigCause]
    CONFIG_CAUSE_LOCAL_STORAGE: _ClassVar[ConfigCause]
    CONFIG_CAUSE_SHARED_LUN: _ClassVar[ConfigCause]
    CONFIG_CAUSE_PASSTHROUGH_NOT_CLUSTERED: _ClassVar[ConfigCause]
    CONFIG_CAUSE_NETWORK_NOT_COMMON: _ClassVar[ConfigCause]
    CONFIG_CAUSE_PORT_GROUP_MISSING: _ClassVar[ConfigCause]
    CONFIG_CAUSE_EXTRA_CLUSTER_RESOURCES: _ClassVar[ConfigCause]
    CONFIG_CAUSE_ISO_ATTACHED: _ClassVar[ConfigCause]

class FailbackMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FAILBACK_MODE_UNSPECIFIED: _ClassVar[FailbackMode]
    FAILBACK_MODE_NEVER: _ClassVar[FailbackMode]
    FAILBACK_MODE_IMMEDIATE: _ClassVar[FailbackMode]
    FAILBACK_MODE_WINDOW: _ClassVar[FailbackMode]

class FailedAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FAILED_ACTION_UNSPECIFIED: _ClassVar[FailedAction]
    FAILED_ACTION_FAILOVER: _ClassVar[FailedAction]
    FAILED_ACTION_THRESHOLD: _ClassVar[FailedAction]
    FAILED_ACTION_START: _ClassVar[FailedAction]
    FAILED_ACTION_REPORTED: _ClassVar[FailedAction]

class IncidentKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INCIDENT_KIND_UNSPECIFIED: _ClassVar[IncidentKind]
    INCIDENT_KIND_DUPLICATE_COPY: _ClassVar[IncidentKind]

class JobStepOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STEP_OUTCOME_UNSPECIFIED: _ClassVar[JobStepOutcome]
    JOB_STEP_OUTCOME_PENDING: _ClassVar[JobStepOutcome]
    JOB_STEP_OUTCOME_RUNNING: _ClassVar[JobStepOutcome]
    JOB_STEP_OUTCOME_LIVE_MIGRATED: _ClassVar[JobStepOutcome]
    JOB_STEP_OUTCOME_SAVED: _ClassVar[JobStepOutcome]
    JOB_STEP_OUTCOME_FAILED: _ClassVar[JobStepOutcome]
    JOB_STEP_OUTCOME_NOT_ATTEMPTED: _ClassVar[JobStepOutcome]
    JOB_STEP_OUTCOME_QUICK_MIGRATED: _ClassVar[JobStepOutcome]
    JOB_STEP_OUTCOME_RESTARTED: _ClassVar[JobStepOutcome]
    JOB_STEP_OUTCOME_SHUT_DOWN: _ClassVar[JobStepOutcome]

class MigrationKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MIGRATION_KIND_UNSPECIFIED: _ClassVar[MigrationKind]
    MIGRATION_KIND_LIVE: _ClassVar[MigrationKind]
    MIGRATION_KIND_QUICK: _ClassVar[MigrationKind]
    MIGRATION_KIND_STORAGE: _ClassVar[MigrationKind]
    MIGRATION_KIND_SAN_TRANSFER: _ClassVar[MigrationKind]
    MIGRATION_KIND_NETWORK_TRANSFER: _ClassVar[MigrationKind]

class Transfer(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRANSFER_UNSPECIFIED: _ClassVar[Transfer]
    TRANSFER_AUTO: _ClassVar[Transfer]
    TRANSFER_SAN: _ClassVar[Transfer]
    TRANSFER_NETWORK: _ClassVar[Transfer]

class MigrationState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MIGRATION_STATE_UNSPECIFIED: _ClassVar[MigrationState]
    MIGRATION_STATE_QUEUED: _ClassVar[MigrationState]
    MIGRATION_STATE_RUNNING: _ClassVar[MigrationState]
    MIGRATION_STATE_COMPLETED: _ClassVar[MigrationState]
    MIGRATION_STATE_FAILED: _ClassVar[MigrationState]

class ManagerMigrationPhase(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MANAGER_MIGRATION_PHASE_UNSPECIFIED: _ClassVar[ManagerMigrationPhase]
    MANAGER_MIGRATION_PHASE_QUEUED: _ClassVar[ManagerMigrationPhase]
    MANAGER_MIGRATION_PHASE_PREPARING: _ClassVar[ManagerMigrationPhase]
    MANAGER_MIGRATION_PHASE_DISK_COPY: _ClassVar[ManagerMigrationPhase]
    MANAGER_MIGRATION_PHASE_PRE_COPY: _ClassVar[ManagerMigrationPhase]
    MANAGER_MIGRATION_PHASE_BLACKOUT: _ClassVar[ManagerMigrationPhase]
    MANAGER_MIGRATION_PHASE_QUICK: _ClassVar[ManagerMigrationPhase]
    MANAGER_MIGRATION_PHASE_SAVING: _ClassVar[ManagerMigrationPhase]
    MANAGER_MIGRATION_PHASE_SAVED: _ClassVar[ManagerMigrationPhase]
    MANAGER_MIGRATION_PHASE_TAKING_OVER: _ClassVar[ManagerMigrationPhase]
    MANAGER_MIGRATION_PHASE_TAKEN_OVER: _ClassVar[ManagerMigrationPhase]
    MANAGER_MIGRATION_PHASE_RESTORED: _ClassVar[ManagerMigrationPhase]
    MANAGER_MIGRATION_PHASE_COMPLETED: _ClassVar[ManagerMigrationPhase]
    MANAGER_MIGRATION_PHASE_FILE_COPY: _ClassVar[ManagerMigrationPhase]

class NoConvergePolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NO_CONVERGE_POLICY_UNSPECIFIED: _ClassVar[NoConvergePolicy]
    NO_CONVERGE_POLICY_FAIL: _ClassVar[NoConvergePolicy]
    NO_CONVERGE_POLICY_QUICK: _ClassVar[NoConvergePolicy]

class PlacementGoal(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PLACEMENT_GOAL_UNSPECIFIED: _ClassVar[PlacementGoal]
    PLACEMENT_GOAL_LOAD_BALANCING: _ClassVar[PlacementGoal]
    PLACEMENT_GOAL_RESOURCE_MAXIMIZATION: _ClassVar[PlacementGoal]

class RatingReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RATING_REASON_UNSPECIFIED: _ClassVar[RatingReason]
    RATING_REASON_HOST_STATE: _ClassVar[RatingReason]
    RATING_REASON_MAINTENANCE: _ClassVar[RatingReason]
    RATING_REASON_NOT_CLUSTER_NODE: _ClassVar[RatingReason]
    RATING_REASON_CLUSTER_NODE: _ClassVar[RatingReason]
    RATING_REASON_MEMORY: _ClassVar[RatingReason]
    RATING_REASON_CPU_CORES: _ClassVar[RatingReason]
    RATING_REASON_NETWORK_MISSING: _ClassVar[RatingReason]
    RATING_REASON_STORAGE: _ClassVar[RatingReason]
    RATING_REASON_CLUSTER_OVERCOMMITTED: _ClassVar[RatingReason]
    RATING_REASON_WOULD_OVERCOMMIT: _ClassVar[RatingReason]
    RATING_REASON_MEMORY_LOAD: _ClassVar[RatingReason]
    RATING_REASON_CPU_LOAD: _ClassVar[RatingReason]
    RATING_REASON_LIBRARY_SERVER: _ClassVar[RatingReason]

class MaintenanceMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MAINTENANCE_MODE_UNSPECIFIED: _ClassVar[MaintenanceMode]
    MAINTENANCE_MODE_LIVE: _ClassVar[MaintenanceMode]
    MAINTENANCE_MODE_SAVE: _ClassVar[MaintenanceMode]

class ShutdownAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SHUTDOWN_ACTION_UNSPECIFIED: _ClassVar[ShutdownAction]
    SHUTDOWN_ACTION_SAVE: _ClassVar[ShutdownAction]
    SHUTDOWN_ACTION_SHUTDOWN: _ClassVar[ShutdownAction]
    SHUTDOWN_ACTION_LIVE: _ClassVar[ShutdownAction]

class RepairAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REPAIR_ACTION_UNSPECIFIED: _ClassVar[RepairAction]
    REPAIR_ACTION_RETRY: _ClassVar[RepairAction]
    REPAIR_ACTION_UNDO: _ClassVar[RepairAction]
    REPAIR_ACTION_IGNORE: _ClassVar[RepairAction]
    REPAIR_ACTION_REFRESH: _ClassVar[RepairAction]

class ClusterResourceKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CLUSTER_RESOURCE_KIND_UNSPECIFIED: _ClassVar[ClusterResourceKind]
    CLUSTER_RESOURCE_KIND_VIRTUAL_MACHINE: _ClassVar[ClusterResourceKind]
    CLUSTER_RESOURCE_KIND_VM_CONFIGURATION: _ClassVar[ClusterResourceKind]
    CLUSTER_RESOURCE_KIND_PHYSICAL_DISK: _ClassVar[ClusterResourceKind]
    CLUSTER_RESOURCE_KIND_CSV_PATH: _ClassVar[ClusterResourceKind]
    CLUSTER_RESOURCE_KIND_OTHER: _ClassVar[ClusterResourceKind]
HOST_STATE_UNSPECIFIED: HostState
HOST_STATE_OK: HostState
HOST_STATE_SUSPECT: HostState
HOST_STATE_ISOLATED: HostState
HOST_STATE_NOT_RESPONDING: HostState
HOST_STATE_FENCING: HostState
HOST_STATE_FENCED: HostState
HOST_STATE_MAINTENANCE: HostState
HOST_STATE_STOPPING: HostState
HOST_STATE_STOPPED: HostState
CLUSTER_STATE_UNSPECIFIED: ClusterState
CLUSTER_STATE_OK: ClusterState
CLUSTER_STATE_OVERCOMMITTED: ClusterState
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_COMPLETED: JobState
JOB_STATE_FAILED: JobState
CONFIG_CAUSE_UNSPECIFIED: ConfigCause
CONFIG_CAUSE_STANDALONE_HOST: ConfigCause
CONFIG_CAUSE_LOCAL_STORAGE: ConfigCause
CONFIG_CAUSE_SHARED_LUN: ConfigCause
CONFIG_CAUSE_PASSTHROUGH_NOT_CLUSTERED: ConfigCause
CONFIG_CAUSE_NETWORK_NOT_COMMON: ConfigCause
CONFIG_CAUSE_PORT_GROUP_MISSING: ConfigCause
CONFIG_CAUSE_EXTRA_CLUSTER_RESOURCES: ConfigCause
CONFIG_CAUSE_ISO_ATTACHED: ConfigCause
FAILBACK_MODE_UNSPECIFIED: FailbackMode
FAILBACK_MODE_NEVER: FailbackMode
FAILBACK_MODE_IMMEDIATE: FailbackMode
FAILBACK_MODE_WINDOW: FailbackMode
FAILED_ACTION_UNSPECIFIED: FailedAction
FAILED_ACTION_FAILOVER: FailedAction
FAILED_ACTION_THRESHOLD: FailedAction
FAILED_ACTION_START: FailedAction
FAILED_ACTION_REPORTED: FailedAction
INCIDENT_KIND_UNSPECIFIED: IncidentKind
INCIDENT_KIND_DUPLICATE_COPY: IncidentKind
JOB_STEP_OUTCOME_UNSPECIFIED: JobStepOutcome
JOB_STEP_OUTCOME_PENDING: JobStepOutcome
JOB_STEP_OUTCOME_RUNNING: JobStepOutcome
JOB_STEP_OUTCOME_LIVE_MIGRATED: JobStepOutcome
JOB_STEP_OUTCOME_SAVED: JobStepOutcome
JOB_STEP_OUTCOME_FAILED: JobStepOutcome
JOB_STEP_OUTCOME_NOT_ATTEMPTED: JobStepOutcome
JOB_STEP_OUTCOME_QUICK_MIGRATED: JobStepOutcome
JOB_STEP_OUTCOME_RESTARTED: JobStepOutcome
JOB_STEP_OUTCOME_SHUT_DOWN: JobStepOutcome
MIGRATION_KIND_UNSPECIFIED: MigrationKind
MIGRATION_KIND_LIVE: MigrationKind
MIGRATION_KIND_QUICK: MigrationKind
MIGRATION_KIND_STORAGE: MigrationKind
MIGRATION_KIND_SAN_TRANSFER: MigrationKind
MIGRATION_KIND_NETWORK_TRANSFER: MigrationKind
TRANSFER_UNSPECIFIED: Transfer
TRANSFER_AUTO: Transfer
TRANSFER_SAN: Transfer
TRANSFER_NETWORK: Transfer
MIGRATION_STATE_UNSPECIFIED: MigrationState
MIGRATION_STATE_QUEUED: MigrationState
MIGRATION_STATE_RUNNING: MigrationState
MIGRATION_STATE_COMPLETED: MigrationState
MIGRATION_STATE_FAILED: MigrationState
MANAGER_MIGRATION_PHASE_UNSPECIFIED: ManagerMigrationPhase
MANAGER_MIGRATION_PHASE_QUEUED: ManagerMigrationPhase
MANAGER_MIGRATION_PHASE_PREPARING: ManagerMigrationPhase
MANAGER_MIGRATION_PHASE_DISK_COPY: ManagerMigrationPhase
MANAGER_MIGRATION_PHASE_PRE_COPY: ManagerMigrationPhase
MANAGER_MIGRATION_PHASE_BLACKOUT: ManagerMigrationPhase
MANAGER_MIGRATION_PHASE_QUICK: ManagerMigrationPhase
MANAGER_MIGRATION_PHASE_SAVING: ManagerMigrationPhase
MANAGER_MIGRATION_PHASE_SAVED: ManagerMigrationPhase
MANAGER_MIGRATION_PHASE_TAKING_OVER: ManagerMigrationPhase
MANAGER_MIGRATION_PHASE_TAKEN_OVER: ManagerMigrationPhase
MANAGER_MIGRATION_PHASE_RESTORED: ManagerMigrationPhase
MANAGER_MIGRATION_PHASE_COMPLETED: ManagerMigrationPhase
MANAGER_MIGRATION_PHASE_FILE_COPY: ManagerMigrationPhase
NO_CONVERGE_POLICY_UNSPECIFIED: NoConvergePolicy
NO_CONVERGE_POLICY_FAIL: NoConvergePolicy
NO_CONVERGE_POLICY_QUICK: NoConvergePolicy
PLACEMENT_GOAL_UNSPECIFIED: PlacementGoal
PLACEMENT_GOAL_LOAD_BALANCING: PlacementGoal
PLACEMENT_GOAL_RESOURCE_MAXIMIZATION: PlacementGoal
RATING_REASON_UNSPECIFIED: RatingReason
RATING_REASON_HOST_STATE: RatingReason
RATING_REASON_MAINTENANCE: RatingReason
RATING_REASON_NOT_CLUSTER_NODE: RatingReason
RATING_REASON_CLUSTER_NODE: RatingReason
RATING_REASON_MEMORY: RatingReason
RATING_REASON_CPU_CORES: RatingReason
RATING_REASON_NETWORK_MISSING: RatingReason
RATING_REASON_STORAGE: RatingReason
RATING_REASON_CLUSTER_OVERCOMMITTED: RatingReason
RATING_REASON_WOULD_OVERCOMMIT: RatingReason
RATING_REASON_MEMORY_LOAD: RatingReason
RATING_REASON_CPU_LOAD: RatingReason
RATING_REASON_LIBRARY_SERVER: RatingReason
MAINTENANCE_MODE_UNSPECIFIED: MaintenanceMode
MAINTENANCE_MODE_LIVE: MaintenanceMode
MAINTENANCE_MODE_SAVE: MaintenanceMode
SHUTDOWN_ACTION_UNSPECIFIED: ShutdownAction
SHUTDOWN_ACTION_SAVE: ShutdownAction
SHUTDOWN_ACTION_SHUTDOWN: ShutdownAction
SHUTDOWN_ACTION_LIVE: ShutdownAction
REPAIR_ACTION_UNSPECIFIED: RepairAction
REPAIR_ACTION_RETRY: RepairAction
REPAIR_ACTION_UNDO: RepairAction
REPAIR_ACTION_IGNORE: RepairAction
REPAIR_ACTION_REFRESH: RepairAction
CLUSTER_RESOURCE_KIND_UNSPECIFIED: ClusterResourceKind
CLUSTER_RESOURCE_KIND_VIRTUAL_MACHINE: ClusterResourceKind
CLUSTER_RESOURCE_KIND_VM_CONFIGURATION: ClusterResourceKind
CLUSTER_RESOURCE_KIND_PHYSICAL_DISK: ClusterResourceKind
CLUSTER_RESOURCE_KIND_CSV_PATH: ClusterResourceKind
CLUSTER_RESOURCE_KIND_OTHER: ClusterResourceKind

class Event(_message.Message):
    __slots__ = ("time", "kind", "host", "vm", "detail", "cluster", "old_state", "new_state")
    TIME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    VM_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    OLD_STATE_FIELD_NUMBER: _ClassVar[int]
    NEW_STATE_FIELD_NUMBER: _ClassVar[int]
    time: _timestamp_pb2.Timestamp
    kind: str
    host: str
    vm: str
    detail: str
    cluster: str
    old_state: str
    new_state: str
    def __init__(self, time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., kind: _Optional[str] = ..., host: _Optional[str] = ..., vm: _Optional[str] = ..., detail: _Optional[str] = ..., cluster: _Optional[str] = ..., old_state: _Optional[str] = ..., new_state: _Optional[str] = ...) -> None: ...

class WatchEventsRequest(_message.Message):
    __slots__ = ("replay", "follow")
    REPLAY_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    replay: int
    follow: bool
    def __init__(self, replay: _Optional[int] = ..., follow: _Optional[bool] = ...) -> None: ...

class WatchEventsResponse(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: Event
    def __init__(self, event: _Optional[_Union[Event, _Mapping]] = ...) -> None: ...

class Host(_message.Message):
    __slots__ = ("name", "cluster", "profile", "state", "address", "cpu", "memory_mb", "memory_free_mb", "vm_count", "disks", "networks", "volumes", "rating", "last_refresh", "state_reason", "added_at_runtime", "capabilities", "capabilities_reported")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CPU_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MB_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FREE_MB_FIELD_NUMBER: _ClassVar[int]
    VM_COUNT_FIELD_NUMBER: _ClassVar[int]
    DISKS_FIELD_NUMBER: _ClassVar[int]
    NETWORKS_FIELD_NUMBER: _ClassVar[int]
    VOLUMES_FIELD_NUMBER: _ClassVar[int]
    RATING_FIELD_NUMBER: _ClassVar[int]
    LAST_REFRESH_FIELD_NUMBER: _ClassVar[int]
    STATE_REASON_FIELD_NUMBER: _ClassVar[int]
    ADDED_AT_RUNTIME_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_REPORTED_FIELD_NUMBER: _ClassVar[int]
    name: str
    cluster: str
    profile: _common_pb2.Profile
    state: HostState
    address: str
    cpu: _common_pb2.Cpu
    memory_mb: int
    memory_free_mb: int
    vm_count: int
    disks: _containers.RepeatedCompositeFieldContainer[_common_pb2.LocalDisk]
    networks: _containers.RepeatedCompositeFieldContainer[_common_pb2.Network]
    volumes: _containers.RepeatedCompositeFieldContainer[_common_pb2.SharedVolume]
    rating: float
    last_refresh: _timestamp_pb2.Timestamp
    state_reason: str
    added_at_runtime: bool
    capabilities: _common_pb2.HostCapabilities
    capabilities_reported: bool
    def __init__(self, name: _Optional[str] = ..., cluster: _Optional[str] = ..., profile: _Optional[_Union[_common_pb2.Profile, str]] = ..., state: _Optional[_Union[HostState, str]] = ..., address: _Optional[str] = ..., cpu: _Optional[_Union[_common_pb2.Cpu, _Mapping]] = ..., memory_mb: _Optional[int] = ..., memory_free_mb: _Optional[int] = ..., vm_count: _Optional[int] = ..., disks: _Optional[_Iterable[_Union[_common_pb2.LocalDisk, _Mapping]]] = ..., networks: _Optional[_Iterable[_Union[_common_pb2.Network, _Mapping]]] = ..., volumes: _Optional[_Iterable[_Union[_common_pb2.SharedVolume, _Mapping]]] = ..., rating: _Optional[float] = ..., last_refresh: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., state_reason: _Optional[str] = ..., added_at_runtime: _Optional[bool] = ..., capabilities: _Optional[_Union[_common_pb2.HostCapabilities, _Mapping]] = ..., capabilities_reported: _Optional[bool] = ...) -> None: ...

class Cluster(_message.Message):
    __slots__ = ("name", "profile", "nodes", "reserve", "state", "volumes", "overcommit", "networks", "datacenter")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    RESERVE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    VOLUMES_FIELD_NUMBER: _ClassVar[int]
    OVERCOMMIT_FIELD_NUMBER: _ClassVar[int]
    NETWORKS_FIELD_NUMBER: _ClassVar[int]
    DATACENTER_FIELD_NUMBER: _ClassVar[int]
    name: str
    profile: _common_pb2.Profile
    nodes: _containers.RepeatedScalarFieldContainer[str]
    reserve: int
    state: ClusterState
    volumes: _containers.RepeatedCompositeFieldContainer[_common_pb2.SharedVolume]
    overcommit: Overcommit
    networks: _containers.RepeatedCompositeFieldContainer[ClusterNetwork]
    datacenter: str
    def __init__(self, name: _Optional[str] = ..., profile: _Optional[_Union[_common_pb2.Profile, str]] = ..., nodes: _Optional[_Iterable[str]] = ..., reserve: _Optional[int] = ..., state: _Optional[_Union[ClusterState, str]] = ..., volumes: _Optional[_Iterable[_Union[_common_pb2.SharedVolume, _Mapping]]] = ..., overcommit: _Optional[_Union[Overcommit, _Mapping]] = ..., networks: _Optional[_Iterable[_Union[ClusterNetwork, _Mapping]]] = ..., datacenter: _Optional[str] = ...) -> None: ...

class ClusterNetwork(_message.Message):
    __slots__ = ("name", "kind", "common", "vlan_id", "bound_to", "missing_on", "differs_on")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    COMMON_FIELD_NUMBER: _ClassVar[int]
    VLAN_ID_FIELD_NUMBER: _ClassVar[int]
    BOUND_TO_FIELD_NUMBER: _ClassVar[int]
    MISSING_ON_FIELD_NUMBER: _ClassVar[int]
    DIFFERS_ON_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: _common_pb2.NetworkKind
    common: bool
    vlan_id: int
    bound_to: str
    missing_on: _containers.RepeatedScalarFieldContainer[str]
    differs_on: _containers.RepeatedCompositeFieldContainer[NetworkDifference]
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[_Union[_common_pb2.NetworkKind, str]] = ..., common: _Optional[bool] = ..., vlan_id: _Optional[int] = ..., bound_to: _Optional[str] = ..., missing_on: _Optional[_Iterable[str]] = ..., differs_on: _Optional[_Iterable[_Union[NetworkDifference, _Mapping]]] = ...) -> None: ...

class NetworkDifference(_message.Message):
    __slots__ = ("node", "detail")
    NODE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    node: str
    detail: str
    def __init__(self, node: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class StatusReason(_message.Message):
    __slots__ = ("cause", "detail", "subject")
    CAUSE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    cause: ConfigCause
    detail: str
    subject: str
    def __init__(self, cause: _Optional[_Union[ConfigCause, str]] = ..., detail: _Optional[str] = ..., subject: _Optional[str] = ...) -> None: ...

class Overcommit(_message.Message):
    __slots__ = ("failed_nodes", "unplaced_vms", "detail")
    FAILED_NODES_FIELD_NUMBER: _ClassVar[int]
    UNPLACED_VMS_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    failed_nodes: _containers.RepeatedScalarFieldContainer[str]
    unplaced_vms: _containers.RepeatedScalarFieldContainer[str]
    detail: str
    def __init__(self, failed_nodes: _Optional[_Iterable[str]] = ..., unplaced_vms: _Optional[_Iterable[str]] = ..., detail: _Optional[str] = ...) -> None: ...

class Vm(_message.Message):
    __slots__ = ("id", "name", "host", "state", "highly_available", "status", "memory_mb", "cpus", "disk_gb", "storage", "networks", "imported", "created_at", "reason", "restart_priority", "failover_count", "processor_compatibility", "migration_id", "failover_policy", "recent_failovers", "failed_action", "last_incident", "effective_max_failovers", "status_reasons", "ignored_reasons", "passthrough_disks", "iso_image", "cluster_resources", "path", "data_disks")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    HIGHLY_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MB_FIELD_NUMBER: _ClassVar[int]
    CPUS_FIELD_NUMBER: _ClassVar[int]
    DISK_GB_FIELD_NUMBER: _ClassVar[int]
    STORAGE_FIELD_NUMBER: _ClassVar[int]
    NETWORKS_FIELD_NUMBER: _ClassVar[int]
    IMPORTED_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RESTART_PRIORITY_FIELD_NUMBER: _ClassVar[int]
    FAILOVER_COUNT_FIELD_NUMBER: _ClassVar[int]
    PROCESSOR_COMPATIBILITY_FIELD_NUMBER: _ClassVar[int]
    MIGRATION_ID_FIELD_NUMBER: _ClassVar[int]
    FAILOVER_POLICY_FIELD_NUMBER: _ClassVar[int]
    RECENT_FAILOVERS_FIELD_NUMBER: _ClassVar[int]
    FAILED_ACTION_FIELD_NUMBER: _ClassVar[int]
    LAST_INCIDENT_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_MAX_FAILOVERS_FIELD_NUMBER: _ClassVar[int]
    STATUS_REASONS_FIELD_NUMBER: _ClassVar[int]
    IGNORED_REASONS_FIELD_NUMBER: _ClassVar[int]
    PASSTHROUGH_DISKS_FIELD_NUMBER: _ClassVar[int]
    ISO_IMAGE_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_RESOURCES_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    DATA_DISKS_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    host: str
    state: _common_pb2.VmState
    highly_available: bool
    status: _common_pb2.VmConfigStatus
    memory_mb: int
    cpus: int
    disk_gb: int
    storage: _common_pb2.StorageLocation
    networks: _containers.RepeatedScalarFieldContainer[str]
    imported: bool
    created_at: _timestamp_pb2.Timestamp
    reason: str
    restart_priority: _common_pb2.RestartPriority
    failover_count: int
    processor_compatibility: bool
    migration_id: str
    failover_policy: FailoverPolicy
    recent_failovers: _containers.RepeatedCompositeFieldContainer[_timestamp_pb2.Timestamp]
    failed_action: FailedAction
    last_incident: Incident
    effective_max_failovers: int
    status_reasons: _containers.RepeatedCompositeFieldContainer[StatusReason]
    ignored_reasons: _containers.RepeatedCompositeFieldContainer[StatusReason]
    passthrough_disks: _containers.RepeatedCompositeFieldContainer[_common_pb2.StorageLocation]
    iso_image: str
    cluster_resources: _containers.RepeatedCompositeFieldContainer[_common_pb2.ClusterResource]
    path: str
    data_disks: _containers.RepeatedCompositeFieldContainer[_common_pb2.DataDisk]
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., host: _Optional[str] = ..., state: _Optional[_Union[_common_pb2.VmState, str]] = ..., highly_available: _Optional[bool] = ..., status: _Optional[_Union[_common_pb2.VmConfigStatus, str]] = ..., memory_mb: _Optional[int] = ..., cpus: _Optional[int] = ..., disk_gb: _Optional[int] = ..., storage: _Optional[_Union[_common_pb2.StorageLocation, _Mapping]] = ..., networks: _Optional[_Iterable[str]] = ..., imported: _Optional[bool] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[str] = ..., restart_priority: _Optional[_Union[_common_pb2.RestartPriority, str]] = ..., failover_count: _Optional[int] = ..., processor_compatibility: _Optional[bool] = ..., migration_id: _Optional[str] = ..., failover_policy: _Optional[_Union[FailoverPolicy, _Mapping]] = ..., recent_failovers: _Optional[_Iterable[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]]] = ..., failed_action: _Optional[_Union[FailedAction, str]] = ..., last_incident: _Optional[_Union[Incident, _Mapping]] = ..., effective_max_failovers: _Optional[int] = ..., status_reasons: _Optional[_Iterable[_Union[StatusReason, _Mapping]]] = ..., ignored_reasons: _Optional[_Iterable[_Union[StatusReason, _Mapping]]] = ..., passthrough_disks: _Optional[_Iterable[_Union[_common_pb2.StorageLocation, _Mapping]]] = ..., iso_image: _Optional[str] = ..., cluster_resources: _Optional[_Iterable[_Union[_common_pb2.ClusterResource, _Mapping]]] = ..., path: _Optional[str] = ..., data_disks: _Optional[_Iterable[_Union[_common_pb2.DataDisk, _Mapping]]] = ...) -> None: ...

class FailoverPolicy(_message.Message):
    __slots__ = ("preferred_owners", "possible_owners", "max_failovers", "failover_period_s", "failback", "failback_window_start_hour", "failback_window_end_hour")
    PREFERRED_OWNERS_FIELD_NUMBER: _ClassVar[int]
    POSSIBLE_OWNERS_FIELD_NUMBER: _ClassVar[int]
    MAX_FAILOVERS_FIELD_NUMBER: _ClassVar[int]
    FAILOVER_PERIOD_S_FIELD_NUMBER: _ClassVar[int]
    FAILBACK_FIELD_NUMBER: _ClassVar[int]
    FAILBACK_WINDOW_START_HOUR_FIELD_NUMBER: _ClassVar[int]
    FAILBACK_WINDOW_END_HOUR_FIELD_NUMBER: _ClassVar[int]
    preferred_owners: _containers.RepeatedScalarFieldContainer[str]
    possible_owners: _containers.RepeatedScalarFieldContainer[str]
    max_failovers: int
    failover_period_s: int
    failback: FailbackMode
    failback_window_start_hour: int
    failback_window_end_hour: int
    def __init__(self, preferred_owners: _Optional[_Iterable[str]] = ..., possible_owners: _Optional[_Iterable[str]] = ..., max_failovers: _Optional[int] = ..., failover_period_s: _Optional[int] = ..., failback: _Optional[_Union[FailbackMode, str]] = ..., failback_window_start_hour: _Optional[int] = ..., failback_window_end_hour: _Optional[int] = ...) -> None: ...

class Incident(_message.Message):
    __slots__ = ("kind", "time", "hosts", "detail")
    KIND_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    HOSTS_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    kind: IncidentKind
    time: _timestamp_pb2.Timestamp
    hosts: _containers.RepeatedScalarFieldContainer[str]
    detail: str
    def __init__(self, kind: _Optional[_Union[IncidentKind, str]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., hosts: _Optional[_Iterable[str]] = ..., detail: _Optional[str] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("id", "kind", "target", "state", "progress", "message", "error", "created_at", "updated_at", "steps")
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    id: str
    kind: str
    target: str
    state: JobState
    progress: int
    message: str
    error: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    steps: _containers.RepeatedCompositeFieldContainer[JobStep]
    def __init__(self, id: _Optional[str] = ..., kind: _Optional[str] = ..., target: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., progress: _Optional[int] = ..., message: _Optional[str] = ..., error: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., steps: _Optional[_Iterable[_Union[JobStep, _Mapping]]] = ...) -> None: ...

class JobStep(_message.Message):
    __slots__ = ("vm", "outcome", "host", "detail")
    VM_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    vm: str
    outcome: JobStepOutcome
    host: str
    detail: str
    def __init__(self, vm: _Optional[str] = ..., outcome: _Optional[_Union[JobStepOutcome, str]] = ..., host: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class GetStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetStatusResponse(_message.Message):
    __slots__ = ("manager_version", "hosts_total", "hosts_ok", "vms_total", "vms_running", "clusters", "jobs_running", "vmm_version")
    MANAGER_VERSION_FIELD_NUMBER: _ClassVar[int]
    HOSTS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    HOSTS_OK_FIELD_NUMBER: _ClassVar[int]
    VMS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    VMS_RUNNING_FIELD_NUMBER: _ClassVar[int]
    CLUSTERS_FIELD_NUMBER: _ClassVar[int]
    JOBS_RUNNING_FIELD_NUMBER: _ClassVar[int]
    VMM_VERSION_FIELD_NUMBER: _ClassVar[int]
    manager_version: str
    hosts_total: int
    hosts_ok: int
    vms_total: int
    vms_running: int
    clusters: _containers.RepeatedCompositeFieldContainer[Cluster]
    jobs_running: int
    vmm_version: str
    def __init__(self, manager_version: _Optional[str] = ..., hosts_total: _Optional[int] = ..., hosts_ok: _Optional[int] = ..., vms_total: _Optional[int] = ..., vms_running: _Optional[int] = ..., clusters: _Optional[_Iterable[_Union[Cluster, _Mapping]]] = ..., jobs_running: _Optional[int] = ..., vmm_version: _Optional[str] = ...) -> None: ...

class ListHostsRequest(_message.Message):
    __slots__ = ("cluster",)
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    cluster: str
    def __init__(self, cluster: _Optional[str] = ...) -> None: ...

class ListHostsResponse(_message.Message):
    __slots__ = ("hosts",)
    HOSTS_FIELD_NUMBER: _ClassVar[int]
    hosts: _containers.RepeatedCompositeFieldContainer[Host]
    def __init__(self, hosts: _Optional[_Iterable[_Union[Host, _Mapping]]] = ...) -> None: ...

class GetHostRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetHostResponse(_message.Message):
    __slots__ = ("host",)
    HOST_FIELD_NUMBER: _ClassVar[int]
    host: Host
    def __init__(self, host: _Optional[_Union[Host, _Mapping]] = ...) -> None: ...

class ListClustersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListClustersResponse(_message.Message):
    __slots__ = ("clusters",)
    CLUSTERS_FIELD_NUMBER: _ClassVar[int]
    clusters: _containers.RepeatedCompositeFieldContainer[Cluster]
    def __init__(self, clusters: _Optional[_Iterable[_Union[Cluster, _Mapping]]] = ...) -> None: ...

class GetClusterRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetClusterResponse(_message.Message):
    __slots__ = ("cluster",)
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    cluster: Cluster
    def __init__(self, cluster: _Optional[_Union[Cluster, _Mapping]] = ...) -> None: ...

class RefreshClusterRequest(_message.Message):
    __slots__ = ("target",)
    TARGET_FIELD_NUMBER: _ClassVar[int]
    target: str
    def __init__(self, target: _Optional[str] = ...) -> None: ...

class RefreshClusterResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class CreateVmRequest(_message.Message):
    __slots__ = ("name", "memory_mb", "cpus", "disk_gb", "highly_available", "host", "storage", "networks", "workload", "no_start", "restart_priority", "processor_compatibility", "failover_policy")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MB_FIELD_NUMBER: _ClassVar[int]
    CPUS_FIELD_NUMBER: _ClassVar[int]
    DISK_GB_FIELD_NUMBER: _ClassVar[int]
    HIGHLY_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    STORAGE_FIELD_NUMBER: _ClassVar[int]
    NETWORKS_FIELD_NUMBER: _ClassVar[int]
    WORKLOAD_FIELD_NUMBER: _ClassVar[int]
    NO_START_FIELD_NUMBER: _ClassVar[int]
    RESTART_PRIORITY_FIELD_NUMBER: _ClassVar[int]
    PROCESSOR_COMPATIBILITY_FIELD_NUMBER: _ClassVar[int]
    FAILOVER_POLICY_FIELD_NUMBER: _ClassVar[int]
    name: str
    memory_mb: int
    cpus: int
    disk_gb: int
    highly_available: bool
    host: str
    storage: _common_pb2.StorageLocation
    networks: _containers.RepeatedScalarFieldContainer[str]
    workload: _common_pb2.GuestWorkload
    no_start: bool
    restart_priority: _common_pb2.RestartPriority
    processor_compatibility: bool
    failover_policy: FailoverPolicy
    def __init__(self, name: _Optional[str] = ..., memory_mb: _Optional[int] = ..., cpus: _Optional[int] = ..., disk_gb: _Optional[int] = ..., highly_available: _Optional[bool] = ..., host: _Optional[str] = ..., storage: _Optional[_Union[_common_pb2.StorageLocation, _Mapping]] = ..., networks: _Optional[_Iterable[str]] = ..., workload: _Optional[_Union[_common_pb2.GuestWorkload, _Mapping]] = ..., no_start: _Optional[bool] = ..., restart_priority: _Optional[_Union[_common_pb2.RestartPriority, str]] = ..., processor_compatibility: _Optional[bool] = ..., failover_policy: _Optional[_Union[FailoverPolicy, _Mapping]] = ...) -> None: ...

class CreateVmResponse(_message.Message):
    __slots__ = ("job", "vm")
    JOB_FIELD_NUMBER: _ClassVar[int]
    VM_FIELD_NUMBER: _ClassVar[int]
    job: Job
    vm: Vm
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., vm: _Optional[_Union[Vm, _Mapping]] = ...) -> None: ...

class ListVmsRequest(_message.Message):
    __slots__ = ("host",)
    HOST_FIELD_NUMBER: _ClassVar[int]
    host: str
    def __init__(self, host: _Optional[str] = ...) -> None: ...

class ListVmsResponse(_message.Message):
    __slots__ = ("vms",)
    VMS_FIELD_NUMBER: _ClassVar[int]
    vms: _containers.RepeatedCompositeFieldContainer[Vm]
    def __init__(self, vms: _Optional[_Iterable[_Union[Vm, _Mapping]]] = ...) -> None: ...

class GetVmRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetVmResponse(_message.Message):
    __slots__ = ("vm",)
    VM_FIELD_NUMBER: _ClassVar[int]
    vm: Vm
    def __init__(self, vm: _Optional[_Union[Vm, _Mapping]] = ...) -> None: ...

class OperateVmRequest(_message.Message):
    __slots__ = ("name", "operation")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    name: str
    operation: _agent_pb2.VmOperation
    def __init__(self, name: _Optional[str] = ..., operation: _Optional[_Union[_agent_pb2.VmOperation, str]] = ...) -> None: ...

class OperateVmResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class DeleteVmRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteVmResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("limit",)
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    limit: int
    def __init__(self, limit: _Optional[int] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class WatchJobRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class WatchJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class UpdateVmRequest(_message.Message):
    __slots__ = ("name", "processor_compatibility", "failover_policy", "iso_image", "attach_passthrough", "detach_passthrough")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROCESSOR_COMPATIBILITY_FIELD_NUMBER: _ClassVar[int]
    FAILOVER_POLICY_FIELD_NUMBER: _ClassVar[int]
    ISO_IMAGE_FIELD_NUMBER: _ClassVar[int]
    ATTACH_PASSTHROUGH_FIELD_NUMBER: _ClassVar[int]
    DETACH_PASSTHROUGH_FIELD_NUMBER: _ClassVar[int]
    name: str
    processor_compatibility: bool
    failover_policy: FailoverPolicy
    iso_image: str
    attach_passthrough: _containers.RepeatedCompositeFieldContainer[_common_pb2.StorageLocation]
    detach_passthrough: _containers.RepeatedCompositeFieldContainer[_common_pb2.StorageLocation]
    def __init__(self, name: _Optional[str] = ..., processor_compatibility: _Optional[bool] = ..., failover_policy: _Optional[_Union[FailoverPolicy, _Mapping]] = ..., iso_image: _Optional[str] = ..., attach_passthrough: _Optional[_Iterable[_Union[_common_pb2.StorageLocation, _Mapping]]] = ..., detach_passthrough: _Optional[_Iterable[_Union[_common_pb2.StorageLocation, _Mapping]]] = ...) -> None: ...

class UpdateVmResponse(_message.Message):
    __slots__ = ("job", "vm")
    JOB_FIELD_NUMBER: _ClassVar[int]
    VM_FIELD_NUMBER: _ClassVar[int]
    job: Job
    vm: Vm
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., vm: _Optional[_Union[Vm, _Mapping]] = ...) -> None: ...

class Migration(_message.Message):
    __slots__ = ("id", "vm", "vm_id", "kind", "state", "source", "destination", "storage", "job_id", "passes", "bytes", "bytes_remaining", "mb_per_s", "duration_ms", "blackout_ms", "error", "fell_back_to_quick", "created_at", "updated_at", "phase", "memory_digest", "resumed_digest", "manager_phase", "bytes_total", "highly_available_after")
    ID_FIELD_NUMBER: _ClassVar[int]
    VM_FIELD_NUMBER: _ClassVar[int]
    VM_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    STORAGE_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    PASSES_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    BYTES_REMAINING_FIELD_NUMBER: _ClassVar[int]
    MB_PER_S_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    BLACKOUT_MS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    FELL_BACK_TO_QUICK_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    MEMORY_DIGEST_FIELD_NUMBER: _ClassVar[int]
    RESUMED_DIGEST_FIELD_NUMBER: _ClassVar[int]
    MANAGER_PHASE_FIELD_NUMBER: _ClassVar[int]
    BYTES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    HIGHLY_AVAILABLE_AFTER_FIELD_NUMBER: _ClassVar[int]
    id: str
    vm: str
    vm_id: str
    kind: MigrationKind
    state: MigrationState
    source: str
    destination: str
    storage: _common_pb2.StorageLocation
    job_id: str
    passes: int
    bytes: int
    bytes_remaining: int
    mb_per_s: float
    duration_ms: int
    blackout_ms: int
    error: str
    fell_back_to_quick: bool
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    phase: str
    memory_digest: str
    resumed_digest: str
    manager_phase: ManagerMigrationPhase
    bytes_total: int
    highly_available_after: bool
    def __init__(self, id: _Optional[str] = ..., vm: _Optional[str] = ..., vm_id: _Optional[str] = ..., kind: _Optional[_Union[MigrationKind, str]] = ..., state: _Optional[_Union[MigrationState, str]] = ..., source: _Optional[str] = ..., destination: _Optional[str] = ..., storage: _Optional[_Union[_common_pb2.StorageLocation, _Mapping]] = ..., job_id: _Optional[str] = ..., passes: _Optional[int] = ..., bytes: _Optional[int] = ..., bytes_remaining: _Optional[int] = ..., mb_per_s: _Optional[float] = ..., duration_ms: _Optional[int] = ..., blackout_ms: _Optional[int] = ..., error: _Optional[str] = ..., fell_back_to_quick: _Optional[bool] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., phase: _Optional[str] = ..., memory_digest: _Optional[str] = ..., resumed_digest: _Optional[str] = ..., manager_phase: _Optional[_Union[ManagerMigrationPhase, str]] = ..., bytes_total: _Optional[int] = ..., highly_available_after: _Optional[bool] = ...) -> None: ...

class MigrateVmRequest(_message.Message):
    __slots__ = ("name", "host", "quick", "no_converge", "transfer", "make_ha", "storage")
    NAME_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    QUICK_FIELD_NUMBER: _ClassVar[int]
    NO_CONVERGE_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_FIELD_NUMBER: _ClassVar[int]
    MAKE_HA_FIELD_NUMBER: _ClassVar[int]
    STORAGE_FIELD_NUMBER: _ClassVar[int]
    name: str
    host: str
    quick: bool
    no_converge: NoConvergePolicy
    transfer: Transfer
    make_ha: bool
    storage: _common_pb2.StorageLocation
    def __init__(self, name: _Optional[str] = ..., host: _Optional[str] = ..., quick: _Optional[bool] = ..., no_converge: _Optional[_Union[NoConvergePolicy, str]] = ..., transfer: _Optional[_Union[Transfer, str]] = ..., make_ha: _Optional[bool] = ..., storage: _Optional[_Union[_common_pb2.StorageLocation, _Mapping]] = ...) -> None: ...

class MigrateVmResponse(_message.Message):
    __slots__ = ("job", "migration")
    JOB_FIELD_NUMBER: _ClassVar[int]
    MIGRATION_FIELD_NUMBER: _ClassVar[int]
    job: Job
    migration: Migration
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., migration: _Optional[_Union[Migration, _Mapping]] = ...) -> None: ...

class ConvertDiskRequest(_message.Message):
    __slots__ = ("name", "disk")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DISK_FIELD_NUMBER: _ClassVar[int]
    name: str
    disk: _common_pb2.StorageLocation
    def __init__(self, name: _Optional[str] = ..., disk: _Optional[_Union[_common_pb2.StorageLocation, _Mapping]] = ...) -> None: ...

class ConvertDiskResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class StoreVmRequest(_message.Message):
    __slots__ = ("name", "library", "transfer")
    NAME_FIELD_NUMBER: _ClassVar[int]
    LIBRARY_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_FIELD_NUMBER: _ClassVar[int]
    name: str
    library: str
    transfer: Transfer
    def __init__(self, name: _Optional[str] = ..., library: _Optional[str] = ..., transfer: _Optional[_Union[Transfer, str]] = ...) -> None: ...

class StoreVmResponse(_message.Message):
    __slots__ = ("job", "migration")
    JOB_FIELD_NUMBER: _ClassVar[int]
    MIGRATION_FIELD_NUMBER: _ClassVar[int]
    job: Job
    migration: Migration
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., migration: _Optional[_Union[Migration, _Mapping]] = ...) -> None: ...

class DeployVmRequest(_message.Message):
    __slots__ = ("name", "host", "transfer", "make_ha", "storage")
    NAME_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_FIELD_NUMBER: _ClassVar[int]
    MAKE_HA_FIELD_NUMBER: _ClassVar[int]
    STORAGE_FIELD_NUMBER: _ClassVar[int]
    name: str
    host: str
    transfer: Transfer
    make_ha: bool
    storage: _common_pb2.StorageLocation
    def __init__(self, name: _Optional[str] = ..., host: _Optional[str] = ..., transfer: _Optional[_Union[Transfer, str]] = ..., make_ha: _Optional[bool] = ..., storage: _Optional[_Union[_common_pb2.StorageLocation, _Mapping]] = ...) -> None: ...

class DeployVmResponse(_message.Message):
    __slots__ = ("job", "migration")
    JOB_FIELD_NUMBER: _ClassVar[int]
    MIGRATION_FIELD_NUMBER: _ClassVar[int]
    job: Job
    migration: Migration
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., migration: _Optional[_Union[Migration, _Mapping]] = ...) -> None: ...

class MigrateVmStorageRequest(_message.Message):
    __slots__ = ("name", "host", "storage")
    NAME_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    STORAGE_FIELD_NUMBER: _ClassVar[int]
    name: str
    host: str
    storage: _common_pb2.StorageLocation
    def __init__(self, name: _Optional[str] = ..., host: _Optional[str] = ..., storage: _Optional[_Union[_common_pb2.StorageLocation, _Mapping]] = ...) -> None: ...

class MigrateVmStorageResponse(_message.Message):
    __slots__ = ("job", "migration")
    JOB_FIELD_NUMBER: _ClassVar[int]
    MIGRATION_FIELD_NUMBER: _ClassVar[int]
    job: Job
    migration: Migration
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., migration: _Optional[_Union[Migration, _Mapping]] = ...) -> None: ...

class ListMigrationsRequest(_message.Message):
    __slots__ = ("limit",)
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    limit: int
    def __init__(self, limit: _Optional[int] = ...) -> None: ...

class ListMigrationsResponse(_message.Message):
    __slots__ = ("migrations",)
    MIGRATIONS_FIELD_NUMBER: _ClassVar[int]
    migrations: _containers.RepeatedCompositeFieldContainer[Migration]
    def __init__(self, migrations: _Optional[_Iterable[_Union[Migration, _Mapping]]] = ...) -> None: ...

class GetMigrationRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetMigrationResponse(_message.Message):
    __slots__ = ("migration",)
    MIGRATION_FIELD_NUMBER: _ClassVar[int]
    migration: Migration
    def __init__(self, migration: _Optional[_Union[Migration, _Mapping]] = ...) -> None: ...

class HostRatingReason(_message.Message):
    __slots__ = ("code", "detail", "blocking")
    CODE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    BLOCKING_FIELD_NUMBER: _ClassVar[int]
    code: RatingReason
    detail: str
    blocking: bool
    def __init__(self, code: _Optional[_Union[RatingReason, str]] = ..., detail: _Optional[str] = ..., blocking: _Optional[bool] = ...) -> None: ...

class HostRating(_message.Message):
    __slots__ = ("host", "cluster", "stars", "reasons", "storage")
    HOST_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    STARS_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    STORAGE_FIELD_NUMBER: _ClassVar[int]
    host: str
    cluster: str
    stars: float
    reasons: _containers.RepeatedCompositeFieldContainer[HostRatingReason]
    storage: _common_pb2.StorageLocation
    def __init__(self, host: _Optional[str] = ..., cluster: _Optional[str] = ..., stars: _Optional[float] = ..., reasons: _Optional[_Iterable[_Union[HostRatingReason, _Mapping]]] = ..., storage: _Optional[_Union[_common_pb2.StorageLocation, _Mapping]] = ...) -> None: ...

class RateHostsRequest(_message.Message):
    __slots__ = ("memory_mb", "cpus", "disk_gb", "highly_available", "storage", "networks")
    MEMORY_MB_FIELD_NUMBER: _ClassVar[int]
    CPUS_FIELD_NUMBER: _ClassVar[int]
    DISK_GB_FIELD_NUMBER: _ClassVar[int]
    HIGHLY_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    STORAGE_FIELD_NUMBER: _ClassVar[int]
    NETWORKS_FIELD_NUMBER: _ClassVar[int]
    memory_mb: int
    cpus: int
    disk_gb: int
    highly_available: bool
    storage: _common_pb2.StorageLocation
    networks: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, memory_mb: _Optional[int] = ..., cpus: _Optional[int] = ..., disk_gb: _Optional[int] = ..., highly_available: _Optional[bool] = ..., storage: _Optional[_Union[_common_pb2.StorageLocation, _Mapping]] = ..., networks: _Optional[_Iterable[str]] = ...) -> None: ...

class RateHostsResponse(_message.Message):
    __slots__ = ("ratings", "best_host", "goal")
    RATINGS_FIELD_NUMBER: _ClassVar[int]
    BEST_HOST_FIELD_NUMBER: _ClassVar[int]
    GOAL_FIELD_NUMBER: _ClassVar[int]
    ratings: _containers.RepeatedCompositeFieldContainer[HostRating]
    best_host: str
    goal: PlacementGoal
    def __init__(self, ratings: _Optional[_Iterable[_Union[HostRating, _Mapping]]] = ..., best_host: _Optional[str] = ..., goal: _Optional[_Union[PlacementGoal, str]] = ...) -> None: ...

class UpdateClusterRequest(_message.Message):
    __slots__ = ("name", "reserve")
    NAME_FIELD_NUMBER: _ClassVar[int]
    RESERVE_FIELD_NUMBER: _ClassVar[int]
    name: str
    reserve: int
    def __init__(self, name: _Optional[str] = ..., reserve: _Optional[int] = ...) -> None: ...

class UpdateClusterResponse(_message.Message):
    __slots__ = ("job", "cluster")
    JOB_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    job: Job
    cluster: Cluster
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., cluster: _Optional[_Union[Cluster, _Mapping]] = ...) -> None: ...

class StartMaintenanceRequest(_message.Message):
    __slots__ = ("host", "mode")
    HOST_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    host: str
    mode: MaintenanceMode
    def __init__(self, host: _Optional[str] = ..., mode: _Optional[_Union[MaintenanceMode, str]] = ...) -> None: ...

class StartMaintenanceResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class StopMaintenanceRequest(_message.Message):
    __slots__ = ("host",)
    HOST_FIELD_NUMBER: _ClassVar[int]
    host: str
    def __init__(self, host: _Optional[str] = ...) -> None: ...

class StopMaintenanceResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class AddHostRequest(_message.Message):
    __slots__ = ("host",)
    HOST_FIELD_NUMBER: _ClassVar[int]
    host: _common_pb2.HostConfig
    def __init__(self, host: _Optional[_Union[_common_pb2.HostConfig, _Mapping]] = ...) -> None: ...

class AddHostResponse(_message.Message):
    __slots__ = ("job", "host")
    JOB_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    job: Job
    host: Host
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., host: _Optional[_Union[Host, _Mapping]] = ...) -> None: ...

class RemoveHostRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class RemoveHostResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class ShutdownHostRequest(_message.Message):
    __slots__ = ("host", "action")
    HOST_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    host: str
    action: ShutdownAction
    def __init__(self, host: _Optional[str] = ..., action: _Optional[_Union[ShutdownAction, str]] = ...) -> None: ...

class ShutdownHostResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class RepairVmRequest(_message.Message):
    __slots__ = ("name", "action")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    action: RepairAction
    def __init__(self, name: _Optional[str] = ..., action: _Optional[_Union[RepairAction, str]] = ...) -> None: ...

class RepairVmResponse(_message.Message):
    __slots__ = ("job", "vm")
    JOB_FIELD_NUMBER: _ClassVar[int]
    VM_FIELD_NUMBER: _ClassVar[int]
    job: Job
    vm: Vm
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., vm: _Optional[_Union[Vm, _Mapping]] = ...) -> None: ...

class ListClusterGroupsRequest(_message.Message):
    __slots__ = ("cluster",)
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    cluster: str
    def __init__(self, cluster: _Optional[str] = ...) -> None: ...

class ListClusterGroupsResponse(_message.Message):
    __slots__ = ("groups",)
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    groups: _containers.RepeatedCompositeFieldContainer[ClusterGroup]
    def __init__(self, groups: _Optional[_Iterable[_Union[ClusterGroup, _Mapping]]] = ...) -> None: ...

class ClusterGroup(_message.Message):
    __slots__ = ("name", "vm", "owner_node", "resources")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VM_FIELD_NUMBER: _ClassVar[int]
    OWNER_NODE_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    name: str
    vm: str
    owner_node: str
    resources: _containers.RepeatedCompositeFieldContainer[ClusterGroupResource]
    def __init__(self, name: _Optional[str] = ..., vm: _Optional[str] = ..., owner_node: _Optional[str] = ..., resources: _Optional[_Iterable[_Union[ClusterGroupResource, _Mapping]]] = ...) -> None: ...

class ClusterGroupResource(_message.Message):
    __slots__ = ("name", "kind", "type", "online_on", "path")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ONLINE_ON_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: ClusterResourceKind
    type: str
    online_on: _containers.RepeatedScalarFieldContainer[str]
    path: str
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[_Union[ClusterResourceKind, str]] = ..., type: _Optional[str] = ..., online_on: _Optional[_Iterable[str]] = ..., path: _Optional[str] = ...) -> None: ...

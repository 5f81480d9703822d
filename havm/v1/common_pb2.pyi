import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Profile(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROFILE_UNSPECIFIED: _ClassVar[Profile]
    PROFILE_HYPERV_2008: _ClassVar[Profile]
    PROFILE_HYPERV_2008R2: _ClassVar[Profile]
    PROFILE_ESX: _ClassVar[Profile]
    PROFILE_LIBRARY: _ClassVar[Profile]

class VmState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VM_STATE_UNSPECIFIED: _ClassVar[VmState]
    VM_STATE_STOPPED: _ClassVar[VmState]
    VM_STATE_STARTING: _ClassVar[VmState]
    VM_STATE_RUNNING: _ClassVar[VmState]
    VM_STATE_PAUSED: _ClassVar[VmState]
    VM_STATE_SAVING: _ClassVar[VmState]
    VM_STATE_SAVED: _ClassVar[VmState]
    VM_STATE_MIGRATING: _ClassVar[VmState]
    VM_STATE_FAILED: _ClassVar[VmState]
    VM_STATE_UNKNOWN: _ClassVar[VmState]
    VM_STATE_MISSING: _ClassVar[VmState]
    VM_STATE_WAITING: _ClassVar[VmState]

class VmConfigStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VM_CONFIG_STATUS_UNSPECIFIED: _ClassVar[VmConfigStatus]
    VM_CONFIG_STATUS_OK: _ClassVar[VmConfigStatus]
    VM_CONFIG_STATUS_UNSUPPORTED_CLUSTER_CONFIGURATION: _ClassVar[VmConfigStatus]

class RestartPriority(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESTART_PRIORITY_UNSPECIFIED: _ClassVar[RestartPriority]
    RESTART_PRIORITY_HIGH: _ClassVar[RestartPriority]
    RESTART_PRIORITY_MEDIUM: _ClassVar[RestartPriority]
    RESTART_PRIORITY_LOW: _ClassVar[RestartPriority]
    RESTART_PRIORITY_NONE: _ClassVar[RestartPriority]

class StorageKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STORAGE_KIND_UNSPECIFIED: _ClassVar[StorageKind]
    STORAGE_KIND_LOCAL_DISK: _ClassVar[StorageKind]
    STORAGE_KIND_CSV: _ClassVar[StorageKind]
    STORAGE_KIND_LUN: _ClassVar[StorageKind]

class NetworkKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NETWORK_KIND_UNSPECIFIED: _ClassVar[NetworkKind]
    NETWORK_KIND_VIRTUAL_NETWORK: _ClassVar[NetworkKind]
    NETWORK_KIND_PORT_GROUP: _ClassVar[NetworkKind]

class IsolationResponse(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ISOLATION_RESPONSE_UNSPECIFIED: _ClassVar[IsolationResponse]
    ISOLATION_RESPONSE_POWER_OFF: _ClassVar[IsolationResponse]
    ISOLATION_RESPONSE_SHUT_DOWN: _ClassVar[IsolationResponse]
    ISOLATION_RESPONSE_LEAVE_RUNNING: _ClassVar[IsolationResponse]
PROFILE_UNSPECIFIED: Profile
PROFILE_HYPERV_2008: Profile
PROFILE_HYPERV_2008R2: Profile
PROFILE_ESX: Profile
PROFILE_LIBRARY: Profile
VM_STATE_UNSPECIFIED: VmState
VM_STATE_STOPPED: VmState
VM_STATE_STARTING: VmState
VM_STATE_RUNNING: VmState
VM_STATE_PAUSED: VmState
VM_STATE_SAVING: VmState
VM_STATE_SAVED: VmState
VM_STATE_MIGRATING: VmState
VM_STATE_FAILED: VmState
VM_STATE_UNKNOWN: VmState
VM_STATE_MISSING: VmState
VM_STATE_WAITING: VmState
VM_CONFIG_STATUS_UNSPECIFIED: VmConfigStatus
VM_CONFIG_STATUS_OK: VmConfigStatus
VM_CONFIG_STATUS_UNSUPPORTED_CLUSTER_CONFIGURATION: VmConfigStatus
RESTART_PRIORITY_UNSPECIFIED: RestartPriority
RESTART_PRIORITY_HIGH: RestartPriority
RESTART_PRIORITY_MEDIUM: RestartPriority
RESTART_PRIORITY_LOW: RestartPriority
RESTART_PRIORITY_NONE: RestartPriority
STORAGE_KIND_UNSPECIFIED: StorageKind
STORAGE_KIND_LOCAL_DISK: StorageKind
STORAGE_KIND_CSV: StorageKind
STORAGE_KIND_LUN: StorageKind
NETWORK_KIND_UNSPECIFIED: NetworkKind
NETWORK_KIND_VIRTUAL_NETWORK: NetworkKind
NETWORK_KIND_PORT_GROUP: NetworkKind
ISOLATION_RESPONSE_UNSPECIFIED: IsolationResponse
ISOLATION_RESPONSE_POWER_OFF: IsolationResponse
ISOLATION_RESPONSE_SHUT_DOWN: IsolationResponse
ISOLATION_RESPONSE_LEAVE_RUNNING: IsolationResponse

class HostCapabilities(_message.Message):
    __slots__ = ("live_migration", "quick_migration", "csv", "network_kind", "library_server")
    LIVE_MIGRATION_FIELD_NUMBER: _ClassVar[int]
    QUICK_MIGRATION_FIELD_NUMBER: _ClassVar[int]
    CSV_FIELD_NUMBER: _ClassVar[int]
    NETWORK_KIND_FIELD_NUMBER: _ClassVar[int]
    LIBRARY_SERVER_FIELD_NUMBER: _ClassVar[int]
    live_migration: bool
    quick_migration: bool
    csv: bool
    network_kind: NetworkKind
    library_server: bool
    def __init__(self, live_migration: _Optional[bool] = ..., quick_migration: _Optional[bool] = ..., csv: _Optional[bool] = ..., network_kind: _Optional[_Union[NetworkKind, str]] = ..., library_server: _Optional[bool] = ...) -> None: ...

class Cpu(_message.Message):
    __slots__ = ("vendor", "model", "features", "cores", "mhz")
    VENDOR_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    CORES_FIELD_NUMBER: _ClassVar[int]
    MHZ_FIELD_NUMBER: _ClassVar[int]
    vendor: str
    model: str
    features: _containers.RepeatedScalarFieldContainer[str]
    cores: int
    mhz: int
    def __init__(self, vendor: _Optional[str] = ..., model: _Optional[str] = ..., features: _Optional[_Iterable[str]] = ..., cores: _Optional[int] = ..., mhz: _Optional[int] = ...) -> None: ...

class LocalDisk(_message.Message):
    __slots__ = ("name", "capacity_bytes", "free_bytes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_BYTES_FIELD_NUMBER: _ClassVar[int]
    FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    name: str
    capacity_bytes: int
    free_bytes: int
    def __init__(self, name: _Optional[str] = ..., capacity_bytes: _Optional[int] = ..., free_bytes: _Optional[int] = ...) -> None: ...

class Network(_message.Message):
    __slots__ = ("name", "kind", "bound_to", "vlan_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    BOUND_TO_FIELD_NUMBER: _ClassVar[int]
    VLAN_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: NetworkKind
    bound_to: str
    vlan_id: int
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[_Union[NetworkKind, str]] = ..., bound_to: _Optional[str] = ..., vlan_id: _Optional[int] = ...) -> None: ...

class SharedVolume(_message.Message):
    __slots__ = ("name", "kind", "capacity_bytes", "free_bytes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_BYTES_FIELD_NUMBER: _ClassVar[int]
    FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: StorageKind
    capacity_bytes: int
    free_bytes: int
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[_Union[StorageKind, str]] = ..., capacity_bytes: _Optional[int] = ..., free_bytes: _Optional[int] = ...) -> None: ...

class StorageLocation(_message.Message):
    __slots__ = ("kind", "name")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    kind: StorageKind
    name: str
    def __init__(self, kind: _Optional[_Union[StorageKind, str]] = ..., name: _Optional[str] = ...) -> None: ...

class GuestWorkload(_message.Message):
    __slots__ = ("dirty_rate_mb_per_s", "journal_writes_per_s")
    DIRTY_RATE_MB_PER_S_FIELD_NUMBER: _ClassVar[int]
    JOURNAL_WRITES_PER_S_FIELD_NUMBER: _ClassVar[int]
    dirty_rate_mb_per_s: float
    journal_writes_per_s: float
    def __init__(self, dirty_rate_mb_per_s: _Optional[float] = ..., journal_writes_per_s: _Optional[float] = ...) -> None: ...

class VmSpec(_message.Message):
    __slots__ = ("id", "name", "memory_mb", "cpus", "disk_gb", "storage", "networks", "highly_available", "workload", "processor_compatibility", "passthrough_disks", "iso_image", "cluster_resources", "data_disks")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MB_FIELD_NUMBER: _ClassVar[int]
    CPUS_FIELD_NUMBER: _ClassVar[int]
    DISK_GB_FIELD_NUMBER: _ClassVar[int]
    STORAGE_FIELD_NUMBER: _ClassVar[int]
    NETWORKS_FIELD_NUMBER: _ClassVar[int]
    HIGHLY_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    WORKLOAD_FIELD_NUMBER: _ClassVar[int]
    PROCESSOR_COMPATIBILITY_FIELD_NUMBER: _ClassVar[int]
    PASSTHROUGH_DISKS_FIELD_NUMBER: _ClassVar[int]
    ISO_IMAGE_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_RESOURCES_FIELD_NUMBER: _ClassVar[int]
    DATA_DISKS_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    memory_mb: int
    cpus: int
    disk_gb: int
    storage: StorageLocation
    networks: _containers.RepeatedScalarFieldContainer[str]
    highly_available: bool
    workload: GuestWorkload
    processor_compatibility: bool
    passthrough_disks: _containers.RepeatedCompositeFieldContainer[StorageLocation]
    iso_image: str
    cluster_resources: _containers.RepeatedCompositeFieldContainer[ClusterResource]
    data_disks: _containers.RepeatedCompositeFieldContainer[DataDisk]
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., memory_mb: _Optional[int] = ..., cpus: _Optional[int] = ..., disk_gb: _Optional[int] = ..., storage: _Optional[_Union[StorageLocation, _Mapping]] = ..., networks: _Optional[_Iterable[str]] = ..., highly_available: _Optional[bool] = ..., workload: _Optional[_Union[GuestWorkload, _Mapping]] = ..., processor_compatibility: _Optional[bool] = ..., passthrough_disks: _Optional[_Iterable[_Union[StorageLocation, _Mapping]]] = ..., iso_image: _Optional[str] = ..., cluster_resources: _Optional[_Iterable[_Union[ClusterResource, _Mapping]]] = ..., data_disks: _Optional[_Iterable[_Union[DataDisk, _Mapping]]] = ...) -> None: ...

class DataDisk(_message.Message):
    __slots__ = ("file", "size_bytes", "converted_from")
    FILE_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CONVERTED_FROM_FIELD_NUMBER: _ClassVar[int]
    file: str
    size_bytes: int
    converted_from: StorageLocation
    def __init__(self, file: _Optional[str] = ..., size_bytes: _Optional[int] = ..., converted_from: _Optional[_Union[StorageLocation, _Mapping]] = ...) -> None: ...

class ClusterResource(_message.Message):
    __slots__ = ("name", "type")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ...) -> None: ...

class HostInfo(_message.Message):
    __slots__ = ("name", "cluster", "profile", "cpu", "memory_mb", "memory_free_mb", "disks", "networks", "volumes", "boot_id", "started_at", "capabilities")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    CPU_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MB_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FREE_MB_FIELD_NUMBER: _ClassVar[int]
    DISKS_FIELD_NUMBER: _ClassVar[int]
    NETWORKS_FIELD_NUMBER: _ClassVar[int]
    VOLUMES_FIELD_NUMBER: _ClassVar[int]
    BOOT_ID_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    name: str
    cluster: str
    profile: Profile
    cpu: Cpu
    memory_mb: int
    memory_free_mb: int
    disks: _containers.RepeatedCompositeFieldContainer[LocalDisk]
    networks: _containers.RepeatedCompositeFieldContainer[Network]
    volumes: _containers.RepeatedCompositeFieldContainer[SharedVolume]
    boot_id: str
    started_at: _timestamp_pb2.Timestamp
    capabilities: HostCapabilities
    def __init__(self, name: _Optional[str] = ..., cluster: _Optional[str] = ..., profile: _Optional[_Union[Profile, str]] = ..., cpu: _Optional[_Union[Cpu, _Mapping]] = ..., memory_mb: _Optional[int] = ..., memory_free_mb: _Optional[int] = ..., disks: _Optional[_Iterable[_Union[LocalDisk, _Mapping]]] = ..., networks: _Optional[_Iterable[_Union[Network, _Mapping]]] = ..., volumes: _Optional[_Iterable[_Union[SharedVolume, _Mapping]]] = ..., boot_id: _Optional[str] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., capabilities: _Optional[_Union[HostCapabilities, _Mapping]] = ...) -> None: ...

class VmRuntime(_message.Message):
    __slots__ = ("spec", "state", "reason", "state_since", "lease_generation", "cpu_vendor", "cpu_features", "migration_id")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    STATE_SINCE_FIELD_NUMBER: _ClassVar[int]
    LEASE_GENERATION_FIELD_NUMBER: _ClassVar[int]
    CPU_VENDOR_FIELD_NUMBER: _ClassVar[int]
    CPU_FEATURES_FIELD_NUMBER: _ClassVar[int]
    MIGRATION_ID_FIELD_NUMBER: _ClassVar[int]
    spec: VmSpec
    state: VmState
    reason: str
    state_since: _timestamp_pb2.Timestamp
    lease_generation: int
    cpu_vendor: str
    cpu_features: _containers.RepeatedScalarFieldContainer[str]
    migration_id: str
    def __init__(self, spec: _Optional[_Union[VmSpec, _Mapping]] = ..., state: _Optional[_Union[VmState, str]] = ..., reason: _Optional[str] = ..., state_since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., lease_generation: _Optional[int] = ..., cpu_vendor: _Optional[str] = ..., cpu_features: _Optional[_Iterable[str]] = ..., migration_id: _Optional[str] = ...) -> None: ...

class Timing(_message.Message):
    __slots__ = ("heartbeat_interval_s", "heartbeat_threshold", "probe_timeout_s", "isolation_timeout_s", "stall_timeout_s", "refresh_interval_s")
    HEARTBEAT_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    PROBE_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    ISOLATION_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    STALL_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    REFRESH_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    heartbeat_interval_s: float
    heartbeat_threshold: int
    probe_timeout_s: float
    isolation_timeout_s: float
    stall_timeout_s: float
    refresh_interval_s: float
    def __init__(self, heartbeat_interval_s: _Optional[float] = ..., heartbeat_threshold: _Optional[int] = ..., probe_timeout_s: _Optional[float] = ..., isolation_timeout_s: _Optional[float] = ..., stall_timeout_s: _Optional[float] = ..., refresh_interval_s: _Optional[float] = ...) -> None: ...

class AgentSettings(_message.Message):
    __slots__ = ("guest_tick_s", "shutdown_grace_s", "status_interval_s", "grpc_stop_grace_s", "mqtt_reconnect_max_s", "mqtt_keepalive_s", "mqtt_timeout_s", "max_guest_rate", "isolation_check_interval_s", "migration_max_passes", "migration_blackout_budget_ms", "migration_stalled_passes", "migration_chunk_pages", "migration_disk_chunk_bytes", "migration_progress_interval_s")
    GUEST_TICK_S_FIELD_NUMBER: _ClassVar[int]
    SHUTDOWN_GRACE_S_FIELD_NUMBER: _ClassVar[int]
    STATUS_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    GRPC_STOP_GRACE_S_FIELD_NUMBER: _ClassVar[int]
    MQTT_RECONNECT_MAX_S_FIELD_NUMBER: _ClassVar[int]
    MQTT_KEEPALIVE_S_FIELD_NUMBER: _ClassVar[int]
    MQTT_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    MAX_GUEST_RATE_FIELD_NUMBER: _ClassVar[int]
    ISOLATION_CHECK_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    MIGRATION_MAX_PASSES_FIELD_NUMBER: _ClassVar[int]
    MIGRATION_BLACKOUT_BUDGET_MS_FIELD_NUMBER: _ClassVar[int]
    MIGRATION_STALLED_PASSES_FIELD_NUMBER: _ClassVar[int]
    MIGRATION_CHUNK_PAGES_FIELD_NUMBER: _ClassVar[int]
    MIGRATION_DISK_CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    MIGRATION_PROGRESS_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    guest_tick_s: float
    shutdown_grace_s: float
    status_interval_s: float
    grpc_stop_grace_s: float
    mqtt_reconnect_max_s: float
    mqtt_keepalive_s: int
    mqtt_timeout_s: float
    max_guest_rate: float
    isolation_check_interval_s: float
    migration_max_passes: int
    migration_blackout_budget_ms: float
    migration_stalled_passes: int
    migration_chunk_pages: int
    migration_disk_chunk_bytes: int
    migration_progress_interval_s: float
    def __init__(self, guest_tick_s: _Optional[float] = ..., shutdown_grace_s: _Optional[float] = ..., status_interval_s: _Optional[float] = ..., grpc_stop_grace_s: _Optional[float] = ..., mqtt_reconnect_max_s: _Optional[float] = ..., mqtt_keepalive_s: _Optional[int] = ..., mqtt_timeout_s: _Optional[float] = ..., max_guest_rate: _Optional[float] = ..., isolation_check_interval_s: _Optional[float] = ..., migration_max_passes: _Optional[int] = ..., migration_blackout_budget_ms: _Optional[float] = ..., migration_stalled_passes: _Optional[int] = ..., migration_chunk_pages: _Optional[int] = ..., migration_disk_chunk_bytes: _Optional[int] = ..., migration_progress_interval_s: _Optional[float] = ...) -> None: ...

class HostConfig(_message.Message):
    __slots__ = ("name", "cluster", "profile", "cpu", "memory_mb", "host_reserve_mb", "disks", "networks", "address", "migration_address", "volumes", "san_root", "timing", "isolation_response", "settings", "heartbeat_key", "migration_peer_clusters")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    CPU_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MB_FIELD_NUMBER: _ClassVar[int]
    HOST_RESERVE_MB_FIELD_NUMBER: _ClassVar[int]
    DISKS_FIELD_NUMBER: _ClassVar[int]
    NETWORKS_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    MIGRATION_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    VOLUMES_FIELD_NUMBER: _ClassVar[int]
    SAN_ROOT_FIELD_NUMBER: _ClassVar[int]
    TIMING_FIELD_NUMBER: _ClassVar[int]
    ISOLATION_RESPONSE_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_KEY_FIELD_NUMBER: _ClassVar[int]
    MIGRATION_PEER_CLUSTERS_FIELD_NUMBER: _ClassVar[int]
    name: str
    cluster: str
    profile: Profile
    cpu: Cpu
    memory_mb: int
    host_reserve_mb: int
    disks: _containers.RepeatedCompositeFieldContainer[LocalDisk]
    networks: _containers.RepeatedCompositeFieldContainer[Network]
    address: str
    migration_address: str
    volumes: _containers.RepeatedCompositeFieldContainer[SharedVolume]
    san_root: str
    timing: Timing
    isolation_response: IsolationResponse
    settings: AgentSettings
    heartbeat_key: str
    migration_peer_clusters: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., cluster: _Optional[str] = ..., profile: _Optional[_Union[Profile, str]] = ..., cpu: _Optional[_Union[Cpu, _Mapping]] = ..., memory_mb: _Optional[int] = ..., host_reserve_mb: _Optional[int] = ..., disks: _Optional[_Iterable[_Union[LocalDisk, _Mapping]]] = ..., networks: _Optional[_Iterable[_Union[Network, _Mapping]]] = ..., address: _Optional[str] = ..., migration_address: _Optional[str] = ..., volumes: _Optional[_Iterable[_Union[SharedVolume, _Mapping]]] = ..., san_root: _Optional[str] = ..., timing: _Optional[_Union[Timing, _Mapping]] = ..., isolation_response: _Optional[_Union[IsolationResponse, str]] = ..., settings: _Optional[_Union[AgentSettings, _Mapping]] = ..., heartbeat_key: _Optional[str] = ..., migration_peer_clusters: _Optional[_Iterable[str]] = ...) -> None: ...

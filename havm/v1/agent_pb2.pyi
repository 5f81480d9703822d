from havm.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class VmOperation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VM_OPERATION_UNSPECIFIED: _ClassVar[VmOperation]
    VM_OPERATION_START: _ClassVar[VmOperation]
    VM_OPERATION_SHUTDOWN: _ClassVar[VmOperation]
    VM_OPERATION_TURN_OFF: _ClassVar[VmOperation]
    VM_OPERATION_SAVE: _ClassVar[VmOperation]
    VM_OPERATION_RESTORE: _ClassVar[VmOperation]
    VM_OPERATION_PAUSE: _ClassVar[VmOperation]
    VM_OPERATION_RESUME: _ClassVar[VmOperation]

class MigrationFailure(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MIGRATION_FAILURE_UNSPECIFIED: _ClassVar[MigrationFailure]
    MIGRATION_FAILURE_NOT_CONVERGED: _ClassVar[MigrationFailure]
    MIGRATION_FAILURE_DESTINATION_REFUSED: _ClassVar[MigrationFailure]
    MIGRATION_FAILURE_PEER_GONE: _ClassVar[MigrationFailure]
    MIGRATION_FAILURE_FENCED: _ClassVar[MigrationFailure]

class MigrationPhase(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MIGRATION_PHASE_UNSPECIFIED: _ClassVar[MigrationPhase]
    MIGRATION_PHASE_PREPARING: _ClassVar[MigrationPhase]
    MIGRATION_PHASE_DISK_COPY: _ClassVar[MigrationPhase]
    MIGRATION_PHASE_PRE_COPY: _ClassVar[MigrationPhase]
    MIGRATION_PHASE_BLACKOUT: _ClassVar[MigrationPhase]
    MIGRATION_PHASE_COMPLETED: _ClassVar[MigrationPhase]

class MigrationReply(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MIGRATION_REPLY_UNSPECIFIED: _ClassVar[MigrationReply]
    MIGRATION_REPLY_ACCEPTED: _ClassVar[MigrationReply]
    MIGRATION_REPLY_READY: _ClassVar[MigrationReply]
    MIGRATION_REPLY_RESUMED: _ClassVar[MigrationReply]

class VmFile(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VM_FILE_UNSPECIFIED: _ClassVar[VmFile]
    VM_FILE_DISK: _ClassVar[VmFile]
    VM_FILE_SAVED_STATE: _ClassVar[VmFile]
    VM_FILE_DATA_DISK: _ClassVar[VmFile]
VM_OPERATION_UNSPECIFIED: VmOperation
VM_OPERATION_START: VmOperation
VM_OPERATION_SHUTDOWN: VmOperation
VM_OPERATION_TURN_OFF: VmOperation
VM_OPERATION_SAVE: VmOperation
VM_OPERATION_RESTORE: VmOperation
VM_OPERATION_PAUSE: VmOperation
VM_OPERATION_RESUME: VmOperation
MIGRATION_FAILURE_UNSPECIFIED: MigrationFailure
MIGRATION_FAILURE_NOT_CONVERGED: MigrationFailure
MIGRATION_FAILURE_DESTINATION_REFUSED: MigrationFailure
MIGRATION_FAILURE_PEER_GONE: MigrationFailure
MIGRATION_FAILURE_FENCED: MigrationFailure
MIGRATION_PHASE_UNSPECIFIED: MigrationPhase
MIGRATION_PHASE_PREPARING: MigrationPhase
MIGRATION_PHASE_DISK_COPY: MigrationPhase
MIGRATION_PHASE_PRE_COPY: MigrationPhase
MIGRATION_PHASE_BLACKOUT: MigrationPhase
MIGRATION_PHASE_COMPLETED: MigrationPhase
MIGRATION_REPLY_UNSPECIFIED: MigrationReply
MIGRATION_REPLY_ACCEPTED: MigrationReply
MIGRATION_REPLY_READY: MigrationReply
MIGRATION_REPLY_RESUMED: MigrationReply
VM_FILE_UNSPECIFIED: VmFile
VM_FILE_DISK: VmFile
VM_FILE_SAVED_STATE: VmFile
VM_FILE_DATA_DISK: VmFile

class AgentServiceGetInventoryRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AgentServiceGetInventoryResponse(_message.Message):
    __slots__ = ("host", "vms")
    HOST_FIELD_NUMBER: _ClassVar[int]
    VMS_FIELD_NUMBER: _ClassVar[int]
    host: _common_pb2.HostInfo
    vms: _containers.RepeatedCompositeFieldContainer[_common_pb2.VmRuntime]
    def __init__(self, host: _Optional[_Union[_common_pb2.HostInfo, _Mapping]] = ..., vms: _Optional[_Iterable[_Union[_common_pb2.VmRuntime, _Mapping]]] = ...) -> None: ...

class AgentServiceCreateVmRequest(_message.Message):
    __slots__ = ("spec", "take_over", "lease_generation", "allow_shared_lun")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    TAKE_OVER_FIELD_NUMBER: _ClassVar[int]
    LEASE_GENERATION_FIELD_NUMBER: _ClassVar[int]
    ALLOW_SHARED_LUN_FIELD_NUMBER: _ClassVar[int]
    spec: _common_pb2.VmSpec
    take_over: bool
    lease_generation: int
    allow_shared_lun: bool
    def __init__(self, spec: _Optional[_Union[_common_pb2.VmSpec, _Mapping]] = ..., take_over: _Optional[bool] = ..., lease_generation: _Optional[int] = ..., allow_shared_lun: _Optional[bool] = ...) -> None: ...

class AgentServiceCreateVmResponse(_message.Message):
    __slots__ = ("vm",)
    VM_FIELD_NUMBER: _ClassVar[int]
    vm: _common_pb2.VmRuntime
    def __init__(self, vm: _Optional[_Union[_common_pb2.VmRuntime, _Mapping]] = ...) -> None: ...

class AgentServiceGetVmRequest(_message.Message):
    __slots__ = ("vm_id",)
    VM_ID_FIELD_NUMBER: _ClassVar[int]
    vm_id: str
    def __init__(self, vm_id: _Optional[str] = ...) -> None: ...

class AgentServiceGetVmResponse(_message.Message):
    __slots__ = ("vm",)
    VM_FIELD_NUMBER: _ClassVar[int]
    vm: _common_pb2.VmRuntime
    def __init__(self, vm: _Optional[_Union[_common_pb2.VmRuntime, _Mapping]] = ...) -> None: ...

class AgentServiceOperateVmRequest(_message.Message):
    __slots__ = ("vm_id", "operation")
    VM_ID_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    vm_id: str
    operation: VmOperation
    def __init__(self, vm_id: _Optional[str] = ..., operation: _Optional[_Union[VmOperation, str]] = ...) -> None: ...

class AgentServiceOperateVmResponse(_message.Message):
    __slots__ = ("vm",)
    VM_FIELD_NUMBER: _ClassVar[int]
    vm: _common_pb2.VmRuntime
    def __init__(self, vm: _Optional[_Union[_common_pb2.VmRuntime, _Mapping]] = ...) -> None: ...

class AgentServiceDeleteVmRequest(_message.Message):
    __slots__ = ("vm_id",)
    VM_ID_FIELD_NUMBER: _ClassVar[int]
    vm_id: str
    def __init__(self, vm_id: _Optional[str] = ...) -> None: ...

class AgentServiceDeleteVmResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AgentServiceGetGuestStatusRequest(_message.Message):
    __slots__ = ("vm_id",)
    VM_ID_FIELD_NUMBER: _ClassVar[int]
    vm_id: str
    def __init__(self, vm_id: _Optional[str] = ...) -> None: ...

class AgentServiceGetGuestStatusResponse(_message.Message):
    __slots__ = ("vm_id", "state", "memory_pages", "memory_digest", "journal_last_seq", "journal_writes")
    VM_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MEMORY_PAGES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_DIGEST_FIELD_NUMBER: _ClassVar[int]
    JOURNAL_LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    JOURNAL_WRITES_FIELD_NUMBER: _ClassVar[int]
    vm_id: str
    state: _common_pb2.VmState
    memory_pages: int
    memory_digest: str
    journal_last_seq: int
    journal_writes: int
    def __init__(self, vm_id: _Optional[str] = ..., state: _Optional[_Union[_common_pb2.VmState, str]] = ..., memory_pages: _Optional[int] = ..., memory_digest: _Optional[str] = ..., journal_last_seq: _Optional[int] = ..., journal_writes: _Optional[int] = ...) -> None: ...

class AgentServiceUpdateVmRequest(_message.Message):
    __slots__ = ("vm_id", "processor_compatibility", "iso_image", "replace_passthrough_disks", "passthrough_disks")
    VM_ID_FIELD_NUMBER: _ClassVar[int]
    PROCESSOR_COMPATIBILITY_FIELD_NUMBER: _ClassVar[int]
    ISO_IMAGE_FIELD_NUMBER: _ClassVar[int]
    REPLACE_PASSTHROUGH_DISKS_FIELD_NUMBER: _ClassVar[int]
    PASSTHROUGH_DISKS_FIELD_NUMBER: _ClassVar[int]
    vm_id: str
    processor_compatibility: bool
    iso_image: str
    replace_passthrough_disks: bool
    passthrough_disks: _containers.RepeatedCompositeFieldContainer[_common_pb2.StorageLocation]
    def __init__(self, vm_id: _Optional[str] = ..., processor_compatibility: _Optional[bool] = ..., iso_image: _Optional[str] = ..., replace_passthrough_disks: _Optional[bool] = ..., passthrough_disks: _Optional[_Iterable[_Union[_common_pb2.StorageLocation, _Mapping]]] = ...) -> None: ...

class AgentServiceUpdateVmResponse(_message.Message):
    __slots__ = ("vm",)
    VM_FIELD_NUMBER: _ClassVar[int]
    vm: _common_pb2.VmRuntime
    def __init__(self, vm: _Optional[_Union[_common_pb2.VmRuntime, _Mapping]] = ...) -> None: ...

class AgentServiceCheckCompatibilityRequest(_message.Message):
    __slots__ = ("spec", "cpu_vendor", "cpu_features")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    CPU_VENDOR_FIELD_NUMBER: _ClassVar[int]
    CPU_FEATURES_FIELD_NUMBER: _ClassVar[int]
    spec: _common_pb2.VmSpec
    cpu_vendor: str
    cpu_features: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, spec: _Optional[_Union[_common_pb2.VmSpec, _Mapping]] = ..., cpu_vendor: _Optional[str] = ..., cpu_features: _Optional[_Iterable[str]] = ...) -> None: ...

class AgentServiceCheckCompatibilityResponse(_message.Message):
    __slots__ = ("compatible", "reasons")
    COMPATIBLE_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    compatible: bool
    reasons: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, compatible: _Optional[bool] = ..., reasons: _Optional[_Iterable[str]] = ...) -> None: ...

class AgentServiceMigrateVmRequest(_message.Message):
    __slots__ = ("vm_id", "migration_id", "destination_host", "destination_address", "lease_generation", "max_passes", "blackout_budget_ms", "bandwidth_mb_per_s", "storage", "reattach")
    VM_ID_FIELD_NUMBER: _ClassVar[int]
    MIGRATION_ID_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_HOST_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    LEASE_GENERATION_FIELD_NUMBER: _ClassVar[int]
    MAX_PASSES_FIELD_NUMBER: _ClassVar[int]
    BLACKOUT_BUDGET_MS_FIELD_NUMBER: _ClassVar[int]
    BANDWIDTH_MB_PER_S_FIELD_NUMBER: _ClassVar[int]
    STORAGE_FIELD_NUMBER: _ClassVar[int]
    REATTACH_FIELD_NUMBER: _ClassVar[int]
    vm_id: str
    migration_id: str
    destination_host: str
    destination_address: str
    lease_generation: int
    max_passes: int
    blackout_budget_ms: int
    bandwidth_mb_per_s: float
    storage: _common_pb2.StorageLocation
    reattach: bool
    def __init__(self, vm_id: _Optional[str] = ..., migration_id: _Optional[str] = ..., destination_host: _Optional[str] = ..., destination_address: _Optional[str] = ..., lease_generation: _Optional[int] = ..., max_passes: _Optional[int] = ..., blackout_budget_ms: _Optional[int] = ..., bandwidth_mb_per_s: _Optional[float] = ..., storage: _Optional[_Union[_common_pb2.StorageLocation, _Mapping]] = ..., reattach: _Optional[bool] = ...) -> None: ...

class AgentServiceMigrateVmResponse(_message.Message):
    __slots__ = ("phase", "bytes_sent", "bytes_remaining", "mb_per_s", "duration_ms", "blackout_ms", "memory_digest", "vm", "resumed_digest")
    PHASE_FIELD_NUMBER: _ClassVar[int]
    PASS_FIELD_NUMBER: _ClassVar[int]
    BYTES_SENT_FIELD_NUMBER: _ClassVar[int]
    BYTES_REMAINING_FIELD_NUMBER: _ClassVar[int]
    MB_PER_S_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    BLACKOUT_MS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_DIGEST_FIELD_NUMBER: _ClassVar[int]
    VM_FIELD_NUMBER: _ClassVar[int]
    RESUMED_DIGEST_FIELD_NUMBER: _ClassVar[int]
    phase: MigrationPhase
    bytes_sent: int
    bytes_remaining: int
    mb_per_s: float
    duration_ms: int
    blackout_ms: int
    memory_digest: str
    vm: _common_pb2.VmRuntime
    resumed_digest: str
    def __init__(self, phase: _Optional[_Union[MigrationPhase, str]] = ..., bytes_sent: _Optional[int] = ..., bytes_remaining: _Optional[int] = ..., mb_per_s: _Optional[float] = ..., duration_ms: _Optional[int] = ..., blackout_ms: _Optional[int] = ..., memory_digest: _Optional[str] = ..., vm: _Optional[_Union[_common_pb2.VmRuntime, _Mapping]] = ..., resumed_digest: _Optional[str] = ..., **kwargs) -> None: ...

class MigrationOffer(_message.Message):
    __slots__ = ("migration_id", "source_host", "spec", "lease_generation", "cpu_vendor", "cpu_features", "copy_disk", "memory_pages", "source_storage")
    MIGRATION_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_HOST_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    LEASE_GENERATION_FIELD_NUMBER: _ClassVar[int]
    CPU_VENDOR_FIELD_NUMBER: _ClassVar[int]
    CPU_FEATURES_FIELD_NUMBER: _ClassVar[int]
    COPY_DISK_FIELD_NUMBER: _ClassVar[int]
    MEMORY_PAGES_FIELD_NUMBER: _ClassVar[int]
    SOURCE_STORAGE_FIELD_NUMBER: _ClassVar[int]
    migration_id: str
    source_host: str
    spec: _common_pb2.VmSpec
    lease_generation: int
    cpu_vendor: str
    cpu_features: _containers.RepeatedScalarFieldContainer[str]
    copy_disk: bool
    memory_pages: int
    source_storage: _common_pb2.StorageLocation
    def __init__(self, migration_id: _Optional[str] = ..., source_host: _Optional[str] = ..., spec: _Optional[_Union[_common_pb2.VmSpec, _Mapping]] = ..., lease_generation: _Optional[int] = ..., cpu_vendor: _Optional[str] = ..., cpu_features: _Optional[_Iterable[str]] = ..., copy_disk: _Optional[bool] = ..., memory_pages: _Optional[int] = ..., source_storage: _Optional[_Union[_common_pb2.StorageLocation, _Mapping]] = ...) -> None: ...

class MemoryPages(_message.Message):
    __slots__ = ("pages", "data", "crc32")
    PAGES_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    CRC32_FIELD_NUMBER: _ClassVar[int]
    pages: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    crc32: int
    def __init__(self, pages: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ..., crc32: _Optional[int] = ...) -> None: ...

class DiskExtent(_message.Message):
    __slots__ = ("offset", "data", "crc32")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    CRC32_FIELD_NUMBER: _ClassVar[int]
    offset: int
    data: bytes
    crc32: int
    def __init__(self, offset: _Optional[int] = ..., data: _Optional[bytes] = ..., crc32: _Optional[int] = ...) -> None: ...

class DeviceState(_message.Message):
    __slots__ = ("journal_last_seq", "journal_writes", "page_chooser_counter", "dirty_carry", "journal_carry", "memory_digest")
    JOURNAL_LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    JOURNAL_WRITES_FIELD_NUMBER: _ClassVar[int]
    PAGE_CHOOSER_COUNTER_FIELD_NUMBER: _ClassVar[int]
    DIRTY_CARRY_FIELD_NUMBER: _ClassVar[int]
    JOURNAL_CARRY_FIELD_NUMBER: _ClassVar[int]
    MEMORY_DIGEST_FIELD_NUMBER: _ClassVar[int]
    journal_last_seq: int
    journal_writes: int
    page_chooser_counter: int
    dirty_carry: float
    journal_carry: float
    memory_digest: str
    def __init__(self, journal_last_seq: _Optional[int] = ..., journal_writes: _Optional[int] = ..., page_chooser_counter: _Optional[int] = ..., dirty_carry: _Optional[float] = ..., journal_carry: _Optional[float] = ..., memory_digest: _Optional[str] = ...) -> None: ...

class MigrationCommit(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AgentServiceReceiveMigrationRequest(_message.Message):
    __slots__ = ("offer", "pages", "disk", "device_state", "commit")
    OFFER_FIELD_NUMBER: _ClassVar[int]
    PAGES_FIELD_NUMBER: _ClassVar[int]
    DISK_FIELD_NUMBER: _ClassVar[int]
    DEVICE_STATE_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    offer: MigrationOffer
    pages: MemoryPages
    disk: DiskExtent
    device_state: DeviceState
    commit: MigrationCommit
    def __init__(self, offer: _Optional[_Union[MigrationOffer, _Mapping]] = ..., pages: _Optional[_Union[MemoryPages, _Mapping]] = ..., disk: _Optional[_Union[DiskExtent, _Mapping]] = ..., device_state: _Optional[_Union[DeviceState, _Mapping]] = ..., commit: _Optional[_Union[MigrationCommit, _Mapping]] = ...) -> None: ...

class AgentServiceReceiveMigrationResponse(_message.Message):
    __slots__ = ("reply", "vm", "memory_digest")
    REPLY_FIELD_NUMBER: _ClassVar[int]
    VM_FIELD_NUMBER: _ClassVar[int]
    MEMORY_DIGEST_FIELD_NUMBER: _ClassVar[int]
    reply: MigrationReply
    vm: _common_pb2.VmRuntime
    memory_digest: str
    def __init__(self, reply: _Optional[_Union[MigrationReply, str]] = ..., vm: _Optional[_Union[_common_pb2.VmRuntime, _Mapping]] = ..., memory_digest: _Optional[str] = ...) -> None: ...

class AgentServiceMoveVmStorageRequest(_message.Message):
    __slots__ = ("vm_id", "storage")
    VM_ID_FIELD_NUMBER: _ClassVar[int]
    STORAGE_FIELD_NUMBER: _ClassVar[int]
    vm_id: str
    storage: _common_pb2.StorageLocation
    def __init__(self, vm_id: _Optional[str] = ..., storage: _Optional[_Union[_common_pb2.StorageLocation, _Mapping]] = ...) -> None: ...

class AgentServiceMoveVmStorageResponse(_message.Message):
    __slots__ = ("vm", "bytes_copied", "duration_ms", "blackout_ms")
    VM_FIELD_NUMBER: _ClassVar[int]
    BYTES_COPIED_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    BLACKOUT_MS_FIELD_NUMBER: _ClassVar[int]
    vm: _common_pb2.VmRuntime
    bytes_copied: int
    duration_ms: int
    blackout_ms: int
    def __init__(self, vm: _Optional[_Union[_common_pb2.VmRuntime, _Mapping]] = ..., bytes_copied: _Optional[int] = ..., duration_ms: _Optional[int] = ..., blackout_ms: _Optional[int] = ...) -> None: ...

class AgentServiceConvertDiskRequest(_message.Message):
    __slots__ = ("vm_id", "disk")
    VM_ID_FIELD_NUMBER: _ClassVar[int]
    DISK_FIELD_NUMBER: _ClassVar[int]
    vm_id: str
    disk: _common_pb2.StorageLocation
    def __init__(self, vm_id: _Optional[str] = ..., disk: _Optional[_Union[_common_pb2.StorageLocation, _Mapping]] = ...) -> None: ...

class AgentServiceConvertDiskResponse(_message.Message):
    __slots__ = ("bytes_copied", "bytes_total", "mb_per_s", "vm")
    BYTES_COPIED_FIELD_NUMBER: _ClassVar[int]
    BYTES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    MB_PER_S_FIELD_NUMBER: _ClassVar[int]
    VM_FIELD_NUMBER: _ClassVar[int]
    bytes_copied: int
    bytes_total: int
    mb_per_s: float
    vm: _common_pb2.VmRuntime
    def __init__(self, bytes_copied: _Optional[int] = ..., bytes_total: _Optional[int] = ..., mb_per_s: _Optional[float] = ..., vm: _Optional[_Union[_common_pb2.VmRuntime, _Mapping]] = ...) -> None: ...

class AgentServiceSendVmRequest(_message.Message):
    __slots__ = ("vm_id", "transfer_id", "destination_host", "destination_address", "spec", "lease_generation", "bandwidth_mb_per_s")
    VM_ID_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_ID_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_HOST_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    LEASE_GENERATION_FIELD_NUMBER: _ClassVar[int]
    BANDWIDTH_MB_PER_S_FIELD_NUMBER: _ClassVar[int]
    vm_id: str
    transfer_id: str
    destination_host: str
    destination_address: str
    spec: _common_pb2.VmSpec
    lease_generation: int
    bandwidth_mb_per_s: float
    def __init__(self, vm_id: _Optional[str] = ..., transfer_id: _Optional[str] = ..., destination_host: _Optional[str] = ..., destination_address: _Optional[str] = ..., spec: _Optional[_Union[_common_pb2.VmSpec, _Mapping]] = ..., lease_generation: _Optional[int] = ..., bandwidth_mb_per_s: _Optional[float] = ...) -> None: ...

class AgentServiceSendVmResponse(_message.Message):
    __slots__ = ("bytes_sent", "bytes_total", "mb_per_s", "vm", "duration_ms")
    BYTES_SENT_FIELD_NUMBER: _ClassVar[int]
    BYTES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    MB_PER_S_FIELD_NUMBER: _ClassVar[int]
    VM_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    bytes_sent: int
    bytes_total: int
    mb_per_s: float
    vm: _common_pb2.VmRuntime
    duration_ms: int
    def __init__(self, bytes_sent: _Optional[int] = ..., bytes_total: _Optional[int] = ..., mb_per_s: _Optional[float] = ..., vm: _Optional[_Union[_common_pb2.VmRuntime, _Mapping]] = ..., duration_ms: _Optional[int] = ...) -> None: ...

class VmFilesOffer(_message.Message):
    __slots__ = ("transfer_id", "source_host", "spec", "lease_generation", "state", "disk_bytes", "saved_state_bytes", "cpu_vendor", "cpu_features", "data_disk_bytes")
    TRANSFER_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_HOST_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    LEASE_GENERATION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DISK_BYTES_FIELD_NUMBER: _ClassVar[int]
    SAVED_STATE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CPU_VENDOR_FIELD_NUMBER: _ClassVar[int]
    CPU_FEATURES_FIELD_NUMBER: _ClassVar[int]
    DATA_DISK_BYTES_FIELD_NUMBER: _ClassVar[int]
    transfer_id: str
    source_host: str
    spec: _common_pb2.VmSpec
    lease_generation: int
    state: _common_pb2.VmState
    disk_bytes: int
    saved_state_bytes: int
    cpu_vendor: str
    cpu_features: _containers.RepeatedScalarFieldContainer[str]
    data_disk_bytes: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, transfer_id: _Optional[str] = ..., source_host: _Optional[str] = ..., spec: _Optional[_Union[_common_pb2.VmSpec, _Mapping]] = ..., lease_generation: _Optional[int] = ..., state: _Optional[_Union[_common_pb2.VmState, str]] = ..., disk_bytes: _Optional[int] = ..., saved_state_bytes: _Optional[int] = ..., cpu_vendor: _Optional[str] = ..., cpu_features: _Optional[_Iterable[str]] = ..., data_disk_bytes: _Optional[_Iterable[int]] = ...) -> None: ...

class VmFileChunk(_message.Message):
    __slots__ = ("file", "offset", "data", "crc32c", "data_disk")
    FILE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    CRC32C_FIELD_NUMBER: _ClassVar[int]
    DATA_DISK_FIELD_NUMBER: _ClassVar[int]
    file: VmFile
    offset: int
    data: bytes
    crc32c: int
    data_disk: int
    def __init__(self, file: _Optional[_Union[VmFile, str]] = ..., offset: _Optional[int] = ..., data: _Optional[bytes] = ..., crc32c: _Optional[int] = ..., data_disk: _Optional[int] = ...) -> None: ...

class VmFilesEnd(_message.Message):
    __slots__ = ("disk_digest", "saved_state_digest", "data_disk_digests")
    DISK_DIGEST_FIELD_NUMBER: _ClassVar[int]
    SAVED_STATE_DIGEST_FIELD_NUMBER: _ClassVar[int]
    DATA_DISK_DIGESTS_FIELD_NUMBER: _ClassVar[int]
    disk_digest: str
    saved_state_digest: str
    data_disk_digests: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, disk_digest: _Optional[str] = ..., saved_state_digest: _Optional[str] = ..., data_disk_digests: _Optional[_Iterable[str]] = ...) -> None: ...

class AgentServiceReceiveVmRequest(_message.Message):
    __slots__ = ("offer", "chunk", "end")
    OFFER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    offer: VmFilesOffer
    chunk: VmFileChunk
    end: VmFilesEnd
    def __init__(self, offer: _Optional[_Union[VmFilesOffer, _Mapping]] = ..., chunk: _Optional[_Union[VmFileChunk, _Mapping]] = ..., end: _Optional[_Union[VmFilesEnd, _Mapping]] = ...) -> None: ...

class AgentServiceReceiveVmResponse(_message.Message):
    __slots__ = ("vm",)
    VM_FIELD_NUMBER: _ClassVar[int]
    vm: _common_pb2.VmRuntime
    def __init__(self, vm: _Optional[_Union[_common_pb2.VmRuntime, _Mapping]] = ...) -> None: ...

class AgentServiceShutdownRequest(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class AgentServiceShutdownResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HostAdminServiceAddClusterResourceRequest(_message.Message):
    __slots__ = ("vm_id", "resource")
    VM_ID_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    vm_id: str
    resource: _common_pb2.ClusterResource
    def __init__(self, vm_id: _Optional[str] = ..., resource: _Optional[_Union[_common_pb2.ClusterResource, _Mapping]] = ...) -> None: ...

class HostAdminServiceAddClusterResourceResponse(_message.Message):
    __slots__ = ("vm",)
    VM_FIELD_NUMBER: _ClassVar[int]
    vm: _common_pb2.VmRuntime
    def __init__(self, vm: _Optional[_Union[_common_pb2.VmRuntime, _Mapping]] = ...) -> None: ...

class HostAdminServiceRemoveClusterResourceRequest(_message.Message):
    __slots__ = ("vm_id", "name")
    VM_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    vm_id: str
    name: str
    def __init__(self, vm_id: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class HostAdminServiceRemoveClusterResourceResponse(_message.Message):
    __slots__ = ("vm",)
    VM_FIELD_NUMBER: _ClassVar[int]
    vm: _common_pb2.VmRuntime
    def __init__(self, vm: _Optional[_Union[_common_pb2.VmRuntime, _Mapping]] = ...) -> None: ...

class HostAdminServiceAddNetworkRequest(_message.Message):
    __slots__ = ("network",)
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    network: _common_pb2.Network
    def __init__(self, network: _Optional[_Union[_common_pb2.Network, _Mapping]] = ...) -> None: ...

class HostAdminServiceAddNetworkResponse(_message.Message):
    __slots__ = ("host",)
    HOST_FIELD_NUMBER: _ClassVar[int]
    host: _common_pb2.HostInfo
    def __init__(self, host: _Optional[_Union[_common_pb2.HostInfo, _Mapping]] = ...) -> None: ...

class HostAdminServiceRemoveNetworkRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class HostAdminServiceRemoveNetworkResponse(_message.Message):
    __slots__ = ("host", "disconnected_vms")
    HOST_FIELD_NUMBER: _ClassVar[int]
    DISCONNECTED_VMS_FIELD_NUMBER: _ClassVar[int]
    host: _common_pb2.HostInfo
    disconnected_vms: _containers.RepeatedCompositeFieldContainer[_common_pb2.VmRuntime]
    def __init__(self, host: _Optional[_Union[_common_pb2.HostInfo, _Mapping]] = ..., disconnected_vms: _Optional[_Iterable[_Union[_common_pb2.VmRuntime, _Mapping]]] = ...) -> None: ...

class HostAdminServiceUpdateNetworkRequest(_message.Message):
    __slots__ = ("name", "new_name", "bound_to", "vlan_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NEW_NAME_FIELD_NUMBER: _ClassVar[int]
    BOUND_TO_FIELD_NUMBER: _ClassVar[int]
    VLAN_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    new_name: str
    bound_to: str
    vlan_id: int
    def __init__(self, name: _Optional[str] = ..., new_name: _Optional[str] = ..., bound_to: _Optional[str] = ..., vlan_id: _Optional[int] = ...) -> None: ...

class HostAdminServiceUpdateNetworkResponse(_message.Message):
    __slots__ = ("host", "disconnected_vms")
    HOST_FIELD_NUMBER: _ClassVar[int]
    DISCONNECTED_VMS_FIELD_NUMBER: _ClassVar[int]
    host: _common_pb2.HostInfo
    disconnected_vms: _containers.RepeatedCompositeFieldContainer[_common_pb2.VmRuntime]
    def __init__(self, host: _Optional[_Union[_common_pb2.HostInfo, _Mapping]] = ..., disconnected_vms: _Optional[_Iterable[_Union[_common_pb2.VmRuntime, _Mapping]]] = ...) -> None: ...

class HostAdminServiceAddVolumeRequest(_message.Message):
    __slots__ = ("volume",)
    VOLUME_FIELD_NUMBER: _ClassVar[int]
    volume: _common_pb2.SharedVolume
    def __init__(self, volume: _Optional[_Union[_common_pb2.SharedVolume, _Mapping]] = ...) -> None: ...

class HostAdminServiceAddVolumeResponse(_message.Message):
    __slots__ = ("host",)
    HOST_FIELD_NUMBER: _ClassVar[int]
    host: _common_pb2.HostInfo
    def __init__(self, host: _Optional[_Union[_common_pb2.HostInfo, _Mapping]] = ...) -> None: ...

class HostAdminServiceRemoveVolumeRequest(_message.Message):
    __slots__ = ("name", "kind")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: _common_pb2.StorageKind
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[_Union[_common_pb2.StorageKind, str]] = ...) -> None: ...

class HostAdminServiceRemoveVolumeResponse(_message.Message):
    __slots__ = ("host",)
    HOST_FIELD_NUMBER: _ClassVar[int]
    host: _common_pb2.HostInfo
    def __init__(self, host: _Optional[_Union[_common_pb2.HostInfo, _Mapping]] = ...) -> None: ...

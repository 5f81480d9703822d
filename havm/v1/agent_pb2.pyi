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
VM_OPERATION_UNSPECIFIED: VmOperation
VM_OPERATION_START: VmOperation
VM_OPERATION_SHUTDOWN: VmOperation
VM_OPERATION_TURN_OFF: VmOperation
VM_OPERATION_SAVE: VmOperation
VM_OPERATION_RESTORE: VmOperation
VM_OPERATION_PAUSE: VmOperation
VM_OPERATION_RESUME: VmOperation

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
    __slots__ = ("spec", "take_over", "lease_generation")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    TAKE_OVER_FIELD_NUMBER: _ClassVar[int]
    LEASE_GENERATION_FIELD_NUMBER: _ClassVar[int]
    spec: _common_pb2.VmSpec
    take_over: bool
    lease_generation: int
    def __init__(self, spec: _Optional[_Union[_common_pb2.VmSpec, _Mapping]] = ..., take_over: _Optional[bool] = ..., lease_generation: _Optional[int] = ...) -> None: ...

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

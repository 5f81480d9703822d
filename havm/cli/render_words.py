"""The words of the CLI's JSON contract: enums as lowercase words, times, storage.

Every renderer (havm.cli.render and the modules beside it) spells values the same way
through these.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from google.protobuf import timestamp_pb2
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper
from google.protobuf.message import Message

from havm.v1 import common_pb2

# One object of the JSON contract.
Row = dict[str, Any]

# How a storage location is written on the command line and in JSON ("csv:Volume1").
STORAGE_PREFIXES: dict[common_pb2.StorageKind, str] = {
    common_pb2.STORAGE_KIND_CSV: "csv",
    common_pb2.STORAGE_KIND_LUN: "lun",
    common_pb2.STORAGE_KIND_LOCAL_DISK: "local",
}


def enum_word(enum: EnumTypeWrapper, value: int, prefix: str) -> str:
    """VM_STATE_RUNNING -> "running"; an unknown number -> "unknown_<n>"."""
    try:
        name = enum.Name(value)
    except ValueError:
        return f"unknown_{value}"
    return name.removeprefix(prefix).lower()


def profile_word(value: int) -> str:
    # Profiles read as product names: PROFILE_HYPERV_2008R2 -> "hyperv-2008r2".
    return enum_word(common_pb2.Profile, value, "PROFILE_").replace("_", "-")


def timestamp(message: Message, field: str) -> str | None:
    """ISO 8601 in UTC, or None when the field was never set."""
    if not message.HasField(field):
        return None
    stamp: timestamp_pb2.Timestamp = getattr(message, field)
    return stamp.ToDatetime(tzinfo=UTC).isoformat().replace("+00:00", "Z")


def storage_text(location: common_pb2.StorageLocation) -> str | None:
    if not location.name and not location.kind:
        return None
    prefix = STORAGE_PREFIXES.get(location.kind, "unspecified")
    return f"{prefix}:{location.name}"

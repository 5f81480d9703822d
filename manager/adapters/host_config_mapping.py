"""AddHost's HostConfig message to the topology's HostSpec, checked field by field."""

from __future__ import annotations

from havm.v1 import manager_pb2
from manager.core.errors import InvalidArgumentError
from manager.core.topology import HostSpec


def host_spec_from_proto(pb: manager_pb2.HostConfig) -> HostSpec:
    raise InvalidArgumentError("host: adding hosts at runtime is not available yet")

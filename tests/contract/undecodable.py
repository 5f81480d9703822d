"""Sends bytes that decode as no message to every method of a gRPC service, the way a
broken or hostile client would; shared by the manager's and the agent's tests."""

from __future__ import annotations

import grpc
from google.protobuf.descriptor import ServiceDescriptor

# Field number 15, wire type 7: no protobuf message parses this.
GARBAGE = b"\x7f\xff\xff\xff"


def codes_for_garbage(channel: grpc.Channel, service: ServiceDescriptor) -> dict[str, grpc.StatusCode]:
    """Each method's status code when its request cannot be decoded."""
    codes = {}
    for method in service.methods:
        path = f"/{service.full_name}/{method.name}"
        try:
            if method.client_streaming and method.server_streaming:
                for _ in channel.stream_stream(path)(iter([GARBAGE]), timeout=10):
                    pass
            elif method.client_streaming:
                channel.stream_unary(path)(iter([GARBAGE]), timeout=10)
            elif method.server_streaming:
                for _ in channel.unary_stream(path)(GARBAGE, timeout=10):
                    pass
            else:
                channel.unary_unary(path)(GARBAGE, timeout=10)
        except grpc.RpcError as error:
            codes[method.name] = error.code()
        else:
            codes[method.name] = grpc.StatusCode.OK
    return codes

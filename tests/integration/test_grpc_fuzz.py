"""Every method of the manager and of an agent, called with what a careless or hostile
client sends: messages Hypothesis builds from the method's own request type (any
field, unknown enum values, long and odd strings, deep nesting), and random bytes.
Over mutual TLS as the cluster's admin, on a cluster of its own. Whatever the input,
the answer is a status that means something (never UNKNOWN, never a handler's
INTERNAL) and no component logs a traceback.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cluster_harness import LocalCluster, start_cluster, stop_cluster
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from havm.v1 import agent_pb2, manager_pb2

# In the robustness phase (scripts/test), its tests on one worker: they share a cluster.
pytestmark = [pytest.mark.integration, pytest.mark.robustness, pytest.mark.xdist_group("fuzz")]

HERE = Path(__file__).resolve().parent
# Per method: messages built from its request type, and random byte strings (more with
# HAVM_FUZZ_MESSAGES / HAVM_FUZZ_BYTES, for a longer run than the suite's).
MESSAGES_PER_METHOD = int(os.environ.get("HAVM_FUZZ_MESSAGES", "15"))
BYTES_PER_METHOD = int(os.environ.get("HAVM_FUZZ_BYTES", "10"))
# An agent's Shutdown ends the process under test; every other method is called.
SPARED = {"havm.v1.AgentService.Shutdown"}
# Statuses that would mean the server did not know what happened.
MEANINGLESS = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}

_INTS = {
    FieldDescriptor.TYPE_INT32: st.integers(-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: st.integers(-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: st.integers(-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: st.integers(0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: st.integers(0, 2**32 - 1),
    FieldDescriptor.TYPE_INT64: st.integers(-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: st.integers(-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: st.integers(-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: st.integers(0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: st.integers(0, 2**64 - 1),
}
# The agent every agent method is called on; the manager's methods may name any other
# host (and shut it down, or remove it: what a fuzzer's luck may do to a cluster).
AGENT = "node1"
# Names that exist in the cluster, so that some messages reach past "not found".
KNOWN_NAMES = ["node2", "hv1", "Volume1", "fuzz1", "", "*", "../etc"]


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[object]:
    if field.type in _INTS:
        return _INTS[field.type]
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(
            allow_nan=True, allow_infinity=True, width=32 if field.type == field.TYPE_FLOAT else 64
        )
    if field.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if field.type == FieldDescriptor.TYPE_STRING:
        return st.one_of(
            st.sampled_from(KNOWN_NAMES), st.text(max_size=80), st.text(min_size=300, max_size=600)
        )
    if field.type == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=200)
    if field.type == FieldDescriptor.TYPE_ENUM:
        # Unknown values too: an open enum keeps them.
        return st.one_of(st.sampled_from([v.number for v in field.enum_type.values]), st.integers(-5, 1000))
    raise AssertionError(f"no strategy for field type {field.type}")


def messages(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    """Messages of this type with any subset of their fields set to anything."""
    cls = GetMessageClass(descriptor)
    fields = [f for f in descriptor.fields if not (f.message_type is not None and depth >= 3)]

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        message = cls()
        for field in draw(st.lists(st.sampled_from(fields), unique=True)) if fields else []:
            repeated = field.is_repeated
            if field.message_type is not None:
                if field.message_type.GetOptions().map_entry:
                    continue
                values = draw(
                    st.lists(messages(field.message_type, depth + 1), max_size=3 if repeated else 1)
                )
                if repeated:
                    getattr(message, field.name).extend(values)
                elif values:
                    getattr(message, field.name).CopyFrom(values[0])
            elif repeated:
                getattr(message, field.name).extend(draw(st.lists(_scalar(field), max_size=4)))
            else:
                setattr(message, field.name, draw(_scalar(field)))
        return message

    return build()


def call(channel: grpc.Channel, method: MethodDescriptor, payload: bytes) -> grpc.StatusCode:
    """The status of one call carrying `payload` as its request (or its stream's one)."""
    path = f"/{method.containing_service.full_name}/{method.name}"
    timeout = 2.0
    try:
        if method.client_streaming and method.server_streaming:
            for _ in channel.stream_stream(path)(iter([payload]), timeout=timeout):
                pass
        elif method.client_streaming:
            channel.stream_unary(path)(iter([payload]), timeout=timeout)
        elif method.server_streaming:
            for _ in channel.unary_stream(path)(payload, timeout=timeout):
                pass
        else:
            channel.unary_unary(path)(payload, timeout=timeout)
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


METHODS = [
    m
    for service in (
        manager_pb2.DESCRIPTOR.services_by_name["ManagerService"],
        agent_pb2.DESCRIPTOR.services_by_name["AgentService"],
        agent_pb2.DESCRIPTOR.services_by_name["HostAdminService"],
    )
    for m in service.methods
    if m.full_name not in SPARED
]


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory) -> Iterator[LocalCluster]:
    cluster = start_cluster(
        tmp_path_factory.mktemp("fuzz"), "--topology", str(HERE / "console_topology.yaml")
    )
    try:
        yield cluster
    finally:
        stop_cluster(cluster)


TALLY: Counter[str] = Counter()


def _target(cluster: LocalCluster, method: MethodDescriptor) -> str:
    return "manager" if method.containing_service.name == "ManagerService" else f"agent:{AGENT}"


@pytest.mark.parametrize("method", METHODS, ids=[m.full_name for m in METHODS])
def test_no_request_makes_a_method_answer_without_meaning(
    fuzzed: LocalCluster, method: MethodDescriptor
) -> None:
    with fuzzed.channel(_target(fuzzed, method)) as channel:
        seen: Counter[grpc.StatusCode] = Counter()

        @settings(
            max_examples=MESSAGES_PER_METHOD,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        @given(messages(method.input_type))
        def generated(request: Message) -> None:
            code = call(channel, method, request.SerializeToString())
            seen[code] += 1
            assert code not in MEANINGLESS, f"{method.full_name}({request}) answered {code}"

        generated()
        noise = random.Random(method.full_name)
        for _ in range(BYTES_PER_METHOD):
            payload = noise.randbytes(noise.randint(0, 300))
            code = call(channel, method, payload)
            seen[code] += 1
            assert code not in MEANINGLESS, f"{method.full_name}({payload!r}) answered {code}"
        TALLY.update({code.name: n for code, n in seen.items()})
        TALLY["calls"] += sum(seen.values())


def test_no_component_logged_a_traceback(fuzzed: LocalCluster) -> None:
    for log in (fuzzed.state_dir / "logs").glob("*.log"):
        text = log.read_text(errors="replace")
        assert "Traceback" not in text, f"{log.name}:\n{text[-3000:]}"
        assert "unexpected error" not in text, log.name
    print(f"fuzzed {len(METHODS)} methods: {dict(TALLY)}")

"""In-process gRPC gives the status codes a real channel gives in the same situations."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from havm.scenario.inprocess_grpc import InProcessNetwork
from havm.scenario.virtual_loop import VirtualTimeLoop
from havm.v1 import manager_pb2, manager_pb2_grpc

SERVICE = "havm.v1.ManagerService"


class Servicer:
    def __init__(self) -> None:
        self.calls = 0

    async def GetVm(self, request: Any, context: Any) -> manager_pb2.GetVmResponse:  # noqa: N802
        self.calls += 1
        if request.name == "missing":
            await context.abort(grpc.StatusCode.NOT_FOUND, "VM missing does not exist")
        return manager_pb2.GetVmResponse(vm=manager_pb2.Vm(name=request.name))

    async def WatchEvents(self, request: Any, context: Any):  # type: ignore[no-untyped-def]  # noqa: N802
        for i in range(3):
            await asyncio.sleep(1)
            yield manager_pb2.WatchEventsResponse(event=manager_pb2.Event(detail=f"e{i}"))


def scenario(body, cut: bool = False) -> Any:  # type: ignore[no-untyped-def]
    loop = VirtualTimeLoop()
    network = InProcessNetwork(loop, lambda caller, callee: not cut)
    servicer = Servicer()
    try:
        return loop.run_until_complete(body(loop, network, servicer))
    finally:
        loop.discard_all()
        loop.close()


def test_answers_and_aborts_cross_as_on_a_channel() -> None:
    async def body(loop, network, servicer):  # type: ignore[no-untyped-def]
        network.listen("m:1", "manager", {SERVICE: servicer})
        stub = manager_pb2_grpc.ManagerServiceStub(network.channel("m:1"))
        reply = await stub.GetVm(manager_pb2.GetVmRequest(name="web1"), timeout=1)
        try:
            await stub.GetVm(manager_pb2.GetVmRequest(name="missing"), timeout=1)
        except grpc.aio.AioRpcError as error:
            return reply.vm.name, error.code(), error.details()
        return None

    assert scenario(body) == ("web1", grpc.StatusCode.NOT_FOUND, "VM missing does not exist")


def test_nobody_listening_is_unavailable_at_once() -> None:
    async def body(loop, network, servicer):  # type: ignore[no-untyped-def]
        stub = manager_pb2_grpc.ManagerServiceStub(network.channel("m:1"))
        try:
            await stub.GetVm(manager_pb2.GetVmRequest(name="web1"), timeout=5)
        except grpc.aio.AioRpcError as error:
            return error.code(), loop.time()
        return None

    assert scenario(body) == (grpc.StatusCode.UNAVAILABLE, 0.0)


def test_a_cut_path_and_a_frozen_server_both_wait_out_the_deadline() -> None:
    async def body(loop, network, servicer):  # type: ignore[no-untyped-def]
        network.listen("m:1", "manager", {SERVICE: servicer})
        stub = manager_pb2_grpc.ManagerServiceStub(network.channel("m:1"))
        try:
            await stub.GetVm(manager_pb2.GetVmRequest(name="web1"), timeout=2)
        except grpc.aio.AioRpcError as error:
            return error.code(), loop.time(), servicer.calls
        return None

    assert scenario(body, cut=True) == (grpc.StatusCode.DEADLINE_EXCEEDED, 2.0, 0)

    async def frozen(loop, network, servicer):  # type: ignore[no-untyped-def]
        network.listen("m:1", "manager", {SERVICE: servicer})
        loop.freeze("manager")
        return await body(loop, network, servicer)

    assert scenario(frozen) == (grpc.StatusCode.DEADLINE_EXCEEDED, 2.0, 0)


def test_a_stream_delivers_in_order_and_breaks_when_its_server_dies() -> None:
    async def body(loop, network, servicer):  # type: ignore[no-untyped-def]
        network.listen("m:1", "manager", {SERVICE: servicer})
        stub = manager_pb2_grpc.ManagerServiceStub(network.channel("m:1"))
        whole = [r.event.detail async for r in stub.WatchEvents(manager_pb2.WatchEventsRequest())]
        call = stub.WatchEvents(manager_pb2.WatchEventsRequest())
        first = await call.read()
        loop.kill("manager")
        network.close("m:1")
        try:
            await call.read()
        except grpc.aio.AioRpcError as error:
            return whole, first.event.detail, error.code()
        return None

    assert scenario(body) == (["e0", "e1", "e2"], "e0", grpc.StatusCode.UNAVAILABLE)

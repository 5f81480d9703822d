"""gRPC between machines of one scenario process: the real servicers, no sockets.

The generated stubs take a channel; this module gives them one that hands each call
to the target machine's servicer as a task of that machine. Requests and responses
cross as copies of their own, so nothing is shared by reference, and the status codes
a real channel produces come out of the same situations:

- no server at the address, or its machine died: UNAVAILABLE at once (a refused or
  reset connection); calls in flight when it dies fail the same way;
- the path to it is cut, or the machine is frozen: the call hangs until its deadline,
  then DEADLINE_EXCEEDED (a black hole answers nothing, refuses nothing);
- the servicer aborts: the code and sentence it chose.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from havm.scenario.virtual_loop import VirtualTimeLoop, current_machine


def copied(message: Any) -> Any:
    """The message the other side gets: a deep copy, as the wire would hand over. Not a
    serialisation round trip, which costs some forty times more on a live migration's
    memory pages; the wire's encoding is tested by the real-process tests."""
    copy = type(message)()
    copy.CopyFrom(message)
    return copy


def rpc_error(code: grpc.StatusCode, details: str, trailing: Any = ()) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailing), details)


# Requests a bidirectional stream holds unread before `write` waits (the window).
FLOW_CONTROL_MESSAGES = 4


class _Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str, trailing: Any = ()) -> None:
        super().__init__(details)
        self.code = code
        self.details = details
        self.trailing = tuple(trailing or ())


class _Context:
    """The part of grpc.aio.ServicerContext the servicers use."""

    def __init__(
        self, caller: str, on_initial_metadata: Callable[[tuple[Any, ...]], None] | None = None
    ) -> None:
        self._caller = caller
        self._on_initial_metadata = on_initial_metadata

    async def send_initial_metadata(self, metadata: Any) -> None:
        if self._on_initial_metadata is not None:
            self._on_initial_metadata(tuple(metadata))

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata: Any = ()) -> None:
        raise _Aborted(code, details, trailing_metadata)

    def peer(self) -> str:
        return f"sim:{self._caller}"

    def auth_context(self) -> dict[str, list[bytes]]:
        """A scenario's calls carry no certificates: as on a plaintext server."""
        return {}

    def invocation_metadata(self) -> tuple[()]:
        return ()

    def time_remaining(self) -> None:
        return None

    def cancelled(self) -> bool:
        return False

    def done(self) -> bool:
        return False

    def set_code(self, code: grpc.StatusCode) -> None:
        pass

    def set_details(self, details: str) -> None:
        pass


@dataclass
class Endpoint:
    """A server listening at an address: its machine and its servicers by service name."""

    machine: str
    servicers: dict[str, Any]
    in_flight: set[asyncio.Future[None]] = field(default_factory=set)


class InProcessNetwork:
    """Who listens where, and which paths are cut; the scenario's cluster decides the cuts."""

    def __init__(self, loop: VirtualTimeLoop, path_open: Callable[[str, str], bool]) -> None:
        self.loop = loop
        self._path_open = path_open
        self._endpoints: dict[str, Endpoint] = {}
        # Futures that resolve when a calling machine dies: its streams break.
        self._deaths: dict[str, set[asyncio.Future[None]]] = {}

    def listen(self, address: str, machine: str, servicers: dict[str, Any]) -> None:
        self._endpoints[address] = Endpoint(machine, servicers)

    def close(self, address: str) -> None:
        """The server stops (or its machine died): calls in flight fail as on a reset."""
        endpoint = self._endpoints.pop(address, None)
        if endpoint is None:
            return
        for death in endpoint.in_flight:
            if not death.done():
                death.set_result(None)

    def on_death(self, machine: str, death: asyncio.Future[None]) -> None:
        """`death` resolves when `machine` dies (see machine_died)."""
        self._deaths.setdefault(machine, set()).add(death)

    def machine_died(self, machine: str) -> None:
        for death in self._deaths.pop(machine, set()):
            if not death.done():
                death.set_result(None)

    def listening(self, address: str) -> bool:
        return address in self._endpoints

    def channel(self, address: str) -> InProcessChannel:
        return InProcessChannel(self, address)

    def _route(self, address: str, method: str) -> tuple[Endpoint, Any, str, str]:
        endpoint = self._endpoints.get(address)
        if endpoint is None:
            raise rpc_error(grpc.StatusCode.UNAVAILABLE, f"failed to connect to {address}: refused")
        service, _, name = method.lstrip("/").rpartition("/")
        servicer = endpoint.servicers.get(service)
        if servicer is None:
            raise rpc_error(grpc.StatusCode.UNIMPLEMENTED, f"{service} is not served at {address}")
        caller = current_machine.get()
        return endpoint, getattr(servicer, name), caller, endpoint.machine

    async def _black_hole(self, timeout: float | None) -> None:
        if timeout is None:
            await asyncio.Event().wait()  # never set: without a deadline the call hangs
        else:
            await asyncio.sleep(timeout)
        raise rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")

    async def unary(self, address: str, method: str, request: Any, timeout: float | None) -> Any:
        endpoint, handler, caller, machine = self._route(address, method)
        if not self._path_open(caller, machine):
            await self._black_hole(timeout)
        request = copied(request)
        task = self.loop.spawn(machine, handler(request, _Context(caller)))
        death: asyncio.Future[None] = self.loop.create_future()
        endpoint.in_flight.add(death)
        try:
            done, _ = await asyncio.wait({task, death}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            raise
        finally:
            endpoint.in_flight.discard(death)
        if task not in done:
            task.cancel()
            if death in done:
                raise rpc_error(grpc.StatusCode.UNAVAILABLE, "Connection reset by peer")
            raise rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
        return copied(_result(task))

    def stream(self, address: str, method: str, request: Any, timeout: float | None) -> StreamCall:
        return StreamCall(self, address, method, request, timeout)


def _result(task: asyncio.Task[Any]) -> Any:
    exc = task.exception()
    if exc is None:
        return task.result()
    if isinstance(exc, _Aborted):
        raise rpc_error(exc.code, exc.details, exc.trailing)
    if isinstance(exc, grpc.aio.AioRpcError):
        raise exc
    raise rpc_error(grpc.StatusCode.UNKNOWN, f"Unexpected {type(exc).__name__}: {exc}")


_END = object()


class _Responses:
    """The response side every streaming call shares: a queue the call's pump fills with
    messages, then the end or the error; read it, iterate it, cancel the call."""

    _task: asyncio.Task[None]

    def __init__(self) -> None:
        self._responses: asyncio.Queue[Any] = asyncio.Queue()

    async def read(self) -> Any:
        item = await self._responses.get()
        if item is _END:
            self._responses.put_nowait(_END)
            return grpc.aio.EOF
        if isinstance(item, grpc.aio.AioRpcError):
            self._responses.put_nowait(item)
            raise item
        return item

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Any]:
        try:
            while True:
                item = await self.read()
                if item is grpc.aio.EOF:
                    return
                yield item
        finally:
            self.cancel()  # a reader that leaves ends the call, as on a real channel

    def cancel(self) -> bool:
        return self._task.cancel()

    def done(self) -> bool:
        return self._task.done()


class StreamCall(_Responses):
    """A server-streaming call: iterate it, `read()` it, `cancel()` it."""

    def __init__(
        self,
        network: InProcessNetwork,
        address: str,
        method: str,
        request: Any,
        timeout: float | None,
    ) -> None:
        super().__init__()
        self._task = network.loop.create_task(self._pump(network, address, method, request, timeout))

    async def _pump(
        self,
        network: InProcessNetwork,
        address: str,
        method: str,
        request: Any,
        timeout: float | None,
    ) -> None:
        loop = network.loop
        deadline = None if timeout is None else loop.time() + timeout
        try:
            endpoint, handler, caller, machine = network._route(address, method)
            if not network._path_open(caller, machine):
                await network._black_hole(timeout)
            request = copied(request)
            responses: asyncio.Queue[Any] = asyncio.Queue()

            async def serve() -> None:
                async for response in handler(request, _Context(caller)):
                    await responses.put(copied(response))

            server = loop.spawn(machine, serve())
            death: asyncio.Future[None] = loop.create_future()
            endpoint.in_flight.add(death)
            getter: asyncio.Task[Any] | None = None
            try:
                while True:
                    getter = loop.create_task(responses.get())
                    left = None if deadline is None else max(0.0, deadline - loop.time())
                    done, _ = await asyncio.wait(
                        {getter, server, death}, timeout=left, return_when=asyncio.FIRST_COMPLETED
                    )
                    if getter in done:
                        await self._responses.put(getter.result())
                        continue
                    getter.cancel()
                    if server in done:
                        while not responses.empty():
                            await self._responses.put(responses.get_nowait())
                        _result(server)
                        break
                    server.cancel()
                    if death in done:
                        raise rpc_error(grpc.StatusCode.UNAVAILABLE, "Connection reset by peer")
                    raise rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
            except asyncio.CancelledError:
                # The caller gave the call up: nothing may keep waiting for its responses.
                server.cancel()
                if getter is not None:
                    getter.cancel()
                raise
            finally:
                endpoint.in_flight.discard(death)
            await self._responses.put(_END)
        except grpc.aio.AioRpcError as error:
            await self._responses.put(error)


class BidiCall(_Responses):
    """A bidirectional stream: `write`, `done_writing`, `read`, `code`, `details`, `cancel`.

    The request stream breaks when the calling machine dies (the server's iterator
    raises), the response stream when the serving one does (reads raise UNAVAILABLE)."""

    def __init__(
        self,
        network: InProcessNetwork,
        address: str,
        method: str,
        timeout: float | None,
    ) -> None:
        loop = network.loop
        # Flow control, as HTTP/2's window gives a socket: a writer whose peer stops
        # reading blocks after a few messages instead of queueing without end, so a
        # silent destination is noticed by the writer's own timeout as on real gRPC.
        self._requests: asyncio.Queue[Any] = asyncio.Queue(maxsize=FLOW_CONTROL_MESSAGES)
        super().__init__()
        self._status: asyncio.Future[tuple[grpc.StatusCode, str]] = loop.create_future()
        self._caller_death: asyncio.Future[None] = loop.create_future()
        network.on_death(current_machine.get(), self._caller_death)
        self._task = loop.create_task(self._pump(network, address, method, timeout))

    def _finish(self, code: grpc.StatusCode, details: str) -> None:
        if not self._status.done():
            self._status.set_result((code, details))

    async def _pump(
        self,
        network: InProcessNetwork,
        address: str,
        method: str,
        timeout: float | None,
    ) -> None:
        loop = network.loop
        try:
            endpoint, handler, caller, machine = network._route(address, method)
            if not network._path_open(caller, machine):
                await network._black_hole(timeout)
        except grpc.aio.AioRpcError as error:
            self._finish(error.code(), error.details() or "")
            await self._responses.put(error)
            return
        caller_death = self._caller_death

        async def requests() -> AsyncIterator[Any]:
            while True:
                getter = loop.create_task(self._requests.get())
                await asyncio.wait({getter, caller_death}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    raise rpc_error(grpc.StatusCode.UNAVAILABLE, "the client went away")
                item = getter.result()
                if item is _END:
                    return
                yield copied(item)

        server = network.loop.spawn(machine, self._serve(handler, requests(), caller))
        death: asyncio.Future[None] = loop.create_future()
        endpoint.in_flight.add(death)
        try:
            await asyncio.wait({server, death}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            server.cancel()
            self._finish(grpc.StatusCode.CANCELLED, "Locally cancelled by application!")
            raise
        finally:
            endpoint.in_flight.discard(death)
        if not server.done():
            server.cancel()
            self._finish(grpc.StatusCode.UNAVAILABLE, "Connection reset by peer")
            await self._responses.put(rpc_error(grpc.StatusCode.UNAVAILABLE, "Connection reset by peer"))
            return
        try:
            _result(server) if server.exception() is not None else None
        except grpc.aio.AioRpcError as error:
            self._finish(error.code(), error.details() or "")
            await self._responses.put(error)
            return
        self._finish(grpc.StatusCode.OK, "")
        await self._responses.put(_END)

    async def _serve(self, handler: Any, requests: AsyncIterator[Any], caller: str) -> None:
        async for response in handler(requests, _Context(caller)):
            await self._responses.put(copied(response))

    async def write(self, request: Any) -> None:
        if self._status.done():
            raise asyncio.InvalidStateError("the call has ended")
        # A write waiting for the window fails as soon as the call ends, as on a reset stream.
        put = asyncio.ensure_future(self._requests.put(request))
        waiting: set[asyncio.Future[Any]] = {put, self._status}
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if not put.done():
            put.cancel()
            raise asyncio.InvalidStateError("the call has ended")

    async def done_writing(self) -> None:
        await self._requests.put(_END)

    async def code(self) -> grpc.StatusCode:
        return (await asyncio.shield(self._status))[0]

    async def details(self) -> str:
        return (await asyncio.shield(self._status))[1]

    def cancel(self) -> bool:
        self._finish(grpc.StatusCode.CANCELLED, "Locally cancelled by application!")
        return self._task.cancel()

    def done(self) -> bool:
        return self._status.done()


class ClientStreamCall(BidiCall):
    """A client stream: `write`, `done_writing`, then `await call` for the one answer;
    `initial_metadata()` is what the server sent before it (empty if it ended first)."""

    def __init__(self, network: InProcessNetwork, address: str, method: str, timeout: float | None) -> None:
        self._initial: asyncio.Future[tuple[Any, ...]] = network.loop.create_future()
        super().__init__(network, address, method, timeout)

    def _sent_initial(self, metadata: tuple[Any, ...]) -> None:
        if not self._initial.done():
            self._initial.set_result(metadata)

    def _finish(self, code: grpc.StatusCode, details: str) -> None:
        self._sent_initial(())
        super()._finish(code, details)

    async def _serve(self, handler: Any, requests: AsyncIterator[Any], caller: str) -> None:
        response = await handler(requests, _Context(caller, self._sent_initial))
        await self._responses.put(copied(response))

    async def initial_metadata(self) -> tuple[Any, ...]:
        return await asyncio.shield(self._initial)

    async def _answer(self) -> Any:
        item = await self.read()
        if item is grpc.aio.EOF:
            raise rpc_error(grpc.StatusCode.INTERNAL, "the server ended the call without an answer")
        return item

    def __await__(self) -> Any:
        return self._answer().__await__()


class _UnaryUnary:
    def __init__(self, channel: InProcessChannel, method: str) -> None:
        self._channel, self._method = channel, method

    def __call__(self, request: Any, *, timeout: float | None = None, **_: Any) -> Any:
        net = self._channel.network
        return net.unary(self._channel.address, self._method, request, timeout)


class _UnaryStream(_UnaryUnary):
    def __call__(self, request: Any, *, timeout: float | None = None, **_: Any) -> StreamCall:
        net = self._channel.network
        return net.stream(self._channel.address, self._method, request, timeout)


class InProcessChannel:
    """Enough of grpc.aio.Channel for the generated stubs."""

    def __init__(self, network: InProcessNetwork, address: str) -> None:
        self.network = network
        self.address = address

    def unary_unary(
        self, method: str, request_serializer: Any = None, response_deserializer: Any = None, **_: Any
    ) -> _UnaryUnary:
        return _UnaryUnary(self, method)

    def unary_stream(
        self, method: str, request_serializer: Any = None, response_deserializer: Any = None, **_: Any
    ) -> _UnaryStream:
        return _UnaryStream(self, method)

    def stream_stream(
        self, method: str, request_serializer: Any = None, response_deserializer: Any = None, **_: Any
    ) -> Any:
        def call(*, timeout: float | None = None, **_: Any) -> BidiCall:
            return BidiCall(self.network, self.address, method, timeout)

        return call

    def stream_unary(
        self, method: str, request_serializer: Any = None, response_deserializer: Any = None, **_: Any
    ) -> Any:
        def call(*, timeout: float | None = None, **_: Any) -> ClientStreamCall:
            return ClientStreamCall(self.network, self.address, method, timeout)

        return call

    async def close(self, grace: float | None = None) -> None:
        pass

    async def channel_ready(self) -> None:
        pass

"""How every havm gRPC server and channel treats calls: only from identities the
server's rules admit, with size limits chosen on purpose, and answering a request that
cannot be decoded with INVALID_ARGUMENT and one log line.

Who may call what is each server's own table (`Admission`): the interceptor here only
asks it, before any request is read, and answers PERMISSION_DENIED with its sentence.

Left to itself, grpc answers an undecodable request UNKNOWN and logs a traceback at
ERROR for each: a client sending garbage would fill the log and tell its author
nothing. The interceptor here lets the request through as a marker that the handler
never sees; the call is refused before it.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol, TypeAlias

import grpc

from havm.contract.identity import PeerIdentity, peer_identity

# Every handler's second argument.
Context: TypeAlias = grpc.aio.ServicerContext

MIB = 1024 * 1024
# The manager's API: requests are names and small specs; answers may list thousands
# of VMs, hosts, jobs or events.
API_REQUEST_LIMIT = 4 * MIB
API_RESPONSE_LIMIT = 64 * MIB
API_SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", API_REQUEST_LIMIT),
    ("grpc.max_send_message_length", API_RESPONSE_LIMIT),
]
API_CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", API_RESPONSE_LIMIT),
    ("grpc.max_send_message_length", API_REQUEST_LIMIT),
]


# How grpc itself words a call that never reached a server, or lost it: not a server's
# own answer, so never a sentence to show as one.
TRANSPORT_FAILURES = (
    "failed to connect to all addresses",
    "Socket closed",
    "Connection reset",
    "Broken pipe",
    "GOAWAY received",
    "Stream removed",
    "Received RST_STREAM",
    "Internal error from Core",
    "recvmsg",
    "sendmsg",
)


def transport_failure(details: str | None) -> bool:
    """Whether an UNAVAILABLE (or INTERNAL) call's details are grpc's own words for a
    connection that failed, rather than a server's sentence (which may quote them, but
    never begins with them)."""
    return details is not None and details.startswith(TRANSPORT_FAILURES)


class _Undecodable:
    """Stands in for a request whose bytes are no message of the method's type."""

    def __init__(self, size: int, problem: str) -> None:
        self.size = size
        self.problem = problem


def _parse_or_mark(deserializer: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as exc:  # DecodeError, or anything a broken message raises
            return _Undecodable(len(data), str(exc) or type(exc).__name__)

    return parse


class Admission(Protocol):
    """A server's rule of who may call which method."""

    def refusal(self, identity: PeerIdentity | None, method: str) -> str | None:
        """Why `identity` may not call `method` (the full name, /package.Service/Method),
        or None when it may. `identity` is None on a server without TLS."""


class CallGuard(grpc.aio.ServerInterceptor):
    """A grpc.aio server interceptor: calls `admission` refuses become PERMISSION_DENIED,
    undecodable requests INVALID_ARGUMENT."""

    def __init__(self, log: logging.Logger, admission: Admission | None = None) -> None:
        self._log = log
        self._admission = admission

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        return self._guarded(handler, handler_call_details.method)

    async def _admit(self, context: Context, method: str) -> None:
        if self._admission is None:
            return
        identity = peer_identity(context)
        refusal = self._admission.refusal(identity, method)
        if refusal is not None:
            who = identity.describe() if identity is not None else "an unauthenticated client"
            self._log.warning("%s refused to %s: %s", method, who, refusal)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, refusal)

    async def _refuse(self, context: Context, method: str, request: _Undecodable) -> None:
        self._log.warning(
            "%s: a request of %d bytes cannot be decoded (%s): answered INVALID_ARGUMENT",
            method,
            request.size,
            request.problem,
        )
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"the request cannot be decoded as {method}'s")

    def _guarded(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        parse = _parse_or_mark(handler.request_deserializer)
        serialize = handler.response_serializer
        admit = self._admit
        refuse = self._refuse
        if handler.unary_unary is not None:
            unary = handler.unary_unary

            async def unary_unary(request: Any, context: Context) -> Any:
                await admit(context, method)
                if isinstance(request, _Undecodable):
                    await refuse(context, method, request)
                return await unary(request, context)

            return grpc.unary_unary_rpc_method_handler(unary_unary, parse, serialize)
        if handler.unary_stream is not None:
            streaming = handler.unary_stream
            if inspect.isasyncgenfunction(streaming):

                async def unary_stream(request: Any, context: Context) -> AsyncIterator[Any]:
                    await admit(context, method)
                    if isinstance(request, _Undecodable):
                        await refuse(context, method, request)
                    async for reply in streaming(request, context):
                        yield reply

                return grpc.unary_stream_rpc_method_handler(unary_stream, parse, serialize)

            async def unary_stream_writing(request: Any, context: Context) -> Any:
                await admit(context, method)
                if isinstance(request, _Undecodable):
                    await refuse(context, method, request)
                return await streaming(request, context)

            return grpc.unary_stream_rpc_method_handler(unary_stream_writing, parse, serialize)

        async def checked(requests: AsyncIterator[Any], context: Context) -> AsyncIterator[Any]:
            async for request in requests:
                if isinstance(request, _Undecodable):
                    await refuse(context, method, request)
                yield request

        if handler.stream_unary is not None:
            collecting = handler.stream_unary

            async def stream_unary(requests: AsyncIterator[Any], context: Context) -> Any:
                await admit(context, method)
                return await collecting(checked(requests, context), context)

            return grpc.stream_unary_rpc_method_handler(stream_unary, parse, serialize)
        both = handler.stream_stream
        if inspect.isasyncgenfunction(both):

            async def stream_stream(requests: AsyncIterator[Any], context: Context) -> AsyncIterator[Any]:
                await admit(context, method)
                async for reply in both(checked(requests, context), context):
                    yield reply

            return grpc.stream_stream_rpc_method_handler(stream_stream, parse, serialize)

        async def stream_stream_writing(requests: AsyncIterator[Any], context: Context) -> Any:
            await admit(context, method)
            return await both(checked(requests, context), context)

        return grpc.stream_stream_rpc_method_handler(stream_stream_writing, parse, serialize)

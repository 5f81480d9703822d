"""The real `havm` command line, run inside a scenario against its in-process manager.

A scenario's command is a line of the CLI, parsed, checked and printed by the CLI
itself, so that a scenario folder means the same on virtual time as on real processes.
The CLI is blocking code: it runs in a thread while virtual time stands still
(VirtualTimeLoop.run_outside), and each of its gRPC calls, and each of its pauses
between two polls, is handed to the loop, where time flows until it is answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from havm.cli.client import ClientClock, ClientSettings, ManagerClient
from havm.scenario.inprocess_grpc import InProcessNetwork
from havm.scenario.virtual_loop import VirtualTimeLoop

CLIENT = "client"


class _RpcError(grpc.RpcError, grpc.Call):  # type: ignore[misc]
    """What a blocking channel raises: an RpcError that is also the Call."""

    def __init__(self, error: grpc.aio.AioRpcError) -> None:
        super().__init__(error.details())
        self._error = error

    def code(self) -> grpc.StatusCode:
        return self._error.code()

    def details(self) -> str | None:
        return self._error.details()

    def initial_metadata(self) -> tuple[()]:
        return ()

    def trailing_metadata(self) -> tuple[()]:
        return ()

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> None:
        return None

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: Callable[[], None]) -> bool:
        return False


class BlockingChannel:
    """Enough of grpc.Channel for the CLI's stub, over the scenario's network."""

    def __init__(self, loop: VirtualTimeLoop, network: InProcessNetwork, address: str) -> None:
        self._loop, self._network, self._address = loop, network, address

    def _inside(self, coro: Any) -> Any:
        try:
            return self._loop.call_inside(CLIENT, coro)
        except grpc.aio.AioRpcError as error:
            raise _RpcError(error) from None

    def unary_unary(
        self, method: str, request_serializer: Any = None, response_deserializer: Any = None, **_: Any
    ) -> Callable[..., Any]:
        def call(request: Any, timeout: float | None = None, **_: Any) -> Any:
            return self._inside(self._network.unary(self._address, method, request, timeout))

        return call

    def unary_stream(
        self, method: str, request_serializer: Any = None, response_deserializer: Any = None, **_: Any
    ) -> Callable[..., Iterator[Any]]:
        def call(request: Any, timeout: float | None = None, **_: Any) -> Iterator[Any]:
            async def open_stream() -> Any:
                return self._network.stream(self._address, method, request, timeout)

            stream = self._loop.call_inside(CLIENT, open_stream())
            while True:
                item = self._inside(stream.read())
                if item is grpc.aio.EOF:
                    return
                yield item

        return call

    def subscribe(
        self, callback: Callable[[grpc.ChannelConnectivity], None], try_to_connect: bool = False
    ) -> None:
        state = (
            grpc.ChannelConnectivity.READY
            if self._network.listening(self._address)
            else (grpc.ChannelConnectivity.TRANSIENT_FAILURE)
        )
        callback(state)

    def unsubscribe(self, callback: Callable[[grpc.ChannelConnectivity], None]) -> None:
        pass

    def close(self) -> None:
        pass


class AgentChannel(BlockingChannel):
    """A blocking channel to an agent's in-process address, for the CLI's calls that go to
    the host itself (havm.cli.host_changes)."""

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> Callable[..., Any]:
        """The agent stub's agent-to-agent streams (live migration, network transfer),
        which no command opens: refused if one were."""
        return self._not_carried(method)

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> Callable[..., Any]:
        return self._not_carried(method)

    @staticmethod
    def _not_carried(method: str) -> Callable[..., Any]:
        def call(*_: Any, **__: Any) -> Any:
            error = grpc.aio.AioRpcError(
                grpc.StatusCode.UNIMPLEMENTED,
                grpc.aio.Metadata(),
                grpc.aio.Metadata(),
                f"{method} is not carried from the command line in a scenario",
            )
            raise _RpcError(error)

        return call


@dataclass
class EmbeddedManager:
    """The scenario's manager for the CLI (see havm.cli.options.EmbeddedManager), and its
    way to the agents' in-process addresses (havm.cli.host_changes.AgentChannels)."""

    loop: VirtualTimeLoop
    network: InProcessNetwork
    address: str

    def client(self, settings: ClientSettings) -> ManagerClient:
        def sleep(seconds: float) -> None:
            self.loop.call_inside(CLIENT, asyncio.sleep(seconds))

        clock = ClientClock(monotonic=self.loop.time, sleep=sleep)
        channel = BlockingChannel(self.loop, self.network, self.address)
        return ManagerClient(self.address, settings, channel=channel, clock=clock)  # type: ignore[arg-type]

    def agent_channel(self, address: str) -> grpc.Channel:
        """A channel to an agent at its in-process address (as GetHost gives it)."""
        return AgentChannel(self.loop, self.network, address)  # type: ignore[return-value]


@dataclass(frozen=True)
class CommandResult:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """What the command printed with `-o json`."""
        return json.loads(self.stdout)


def run_cli(argv: list[str], obj: object = None) -> CommandResult:
    """Run `havm ARGV` in this thread as the console script would; capture what it prints."""
    from havm.cli.main import run

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            run(argv, obj=obj)
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    return CommandResult(code, out.getvalue(), err.getvalue())

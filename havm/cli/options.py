"""What every command shares: the global options, the output format, the manager client.

The root callback stores a `GlobalOptions` on the typer context; commands ask it for a
client, which resolves the manager's address only when a command really needs it (so
`--help` and `status`'s local part work without a running manager).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Protocol, runtime_checkable

import typer

from havm.cli.client import ClientSettings, ManagerClient
from havm.cli.context import client_identity, manager_address

# The wire carries counts as int32: larger values are refused as usage errors, before
# protobuf would refuse them with an exception.
INT32_MAX = 2**31 - 1


class OutputFormat(enum.StrEnum):
    table = "table"
    json = "json"


OutputOption = Annotated[
    OutputFormat,
    typer.Option("--output", "-o", help="table for people, json for scripts (stable field names)."),
]


@runtime_checkable
class EmbeddedManager(Protocol):
    """A manager the CLI runs against inside another program (a scenario): passed as the
    typer context's `obj`, it makes the client instead of an address and a socket."""

    def client(self, settings: ClientSettings) -> ManagerClient: ...


@dataclass
class GlobalOptions:
    manager: str | None
    state_dir: Path
    identity: Path | None = None
    settings: ClientSettings = field(default_factory=ClientSettings)
    embedded: EmbeddedManager | None = None
    _client: ManagerClient | None = None

    def client(self) -> ManagerClient:
        if self._client is None and self.embedded is not None:
            self._client = self.embedded.client(self.settings)
        if self._client is None:
            self._client = ManagerClient(
                manager_address(self.manager, self.state_dir),
                self.settings,
                identity=client_identity(self.identity, self.state_dir),
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def global_options(ctx: typer.Context) -> GlobalOptions:
    root = ctx.find_root()
    options = root.obj
    if not isinstance(options, GlobalOptions):
        # Reached only when a sub-app is invoked on its own (tests, embedding).
        options = GlobalOptions(manager=None, state_dir=Path(".havm"))
        root.obj = options
    return options


def client(ctx: typer.Context) -> ManagerClient:
    return global_options(ctx).client()

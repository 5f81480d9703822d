"""`havm host add` and `havm host remove`: hosts joining and leaving a running cluster."""

from __future__ import annotations

import typer


def register_host_admin_commands(host_app: typer.Typer) -> None:
    """Adds `host add` and `host remove` to the `host` command group."""

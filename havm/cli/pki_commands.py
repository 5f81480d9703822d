"""`havm pki issue`: an identity file from the cluster's CA, for a component that runs
outside `havm up` (a container, a process started by hand, a user's own client).

The CA is the state directory's (`pki/`), made on first use, so that what is issued
here and what `havm up` issues trust each other.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from havm.cli.cluster_pki import PKI_DIR, PkiError, issue, load_or_create_ca
from havm.cli.options import global_options
from havm.cli.private_files import write_private
from havm.contract.fields import NAME_MAX_LENGTH
from havm.contract.identity import MANAGER_NAME, Role

pki_app = typer.Typer(no_args_is_help=True, help="The cluster's certificate authority and identity files.")


@pki_app.command("issue")
def issue_command(
    ctx: typer.Context,
    role: Role = typer.Option(
        ..., "--role", case_sensitive=False, help="manager, agent, admin, operator or reader"
    ),
    name: str = typer.Option(
        "", "--name", help="The host's name for an agent; the client's name (default: the role)."
    ),
    cluster: str = typer.Option("", "--cluster", help="An agent's cluster (none for a standalone host)."),
    out: Path = typer.Option(..., "--out", help="Where to write the identity file (made 0600)."),
) -> None:
    """Write an identity file (certificate, key, CA certificate) signed by the cluster's CA."""
    name = name or (MANAGER_NAME if role is Role.MANAGER else role.value)
    problem = None
    if role is Role.AGENT and not name:
        problem = "--name: an agent's identity names its host"
    elif role is not Role.AGENT and cluster:
        problem = "--cluster: only an agent's identity names a cluster"
    elif len(name) > NAME_MAX_LENGTH:
        problem = f"--name: at most {NAME_MAX_LENGTH} characters, got {len(name)}"
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        raise typer.Exit(1)
    state_dir = global_options(ctx).state_dir
    try:
        ca = load_or_create_ca(state_dir / PKI_DIR)
        write_private(out, issue(ca, role, name, cluster or None))
    except PkiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    except OSError as exc:
        print(f"error: --out {out}: {exc.strerror}", file=sys.stderr)
        raise typer.Exit(1) from None
    where = f" of cluster {cluster}" if cluster else ""
    print(f"{role.value} identity {name!r}{where} written to {out} (CA: {state_dir / PKI_DIR / 'ca.pem'})")

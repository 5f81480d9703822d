"""Where the CLI finds the running cluster.

`havm up` writes a context file, `cluster.json`, into the state directory: the
addresses and process ids of the broker, the manager and every agent (or, for a
cluster in containers, their containers). Other commands read it to find the manager
unless `--manager ADDRESS` or `HAVM_MANAGER` says otherwise.
"""

from __future__ import annotations

import enum
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from havm.contract.identity import IdentityFile

CONTEXT_FILE = "cluster.json"


class Runtime(enum.StrEnum):
    """Where the cluster's components run: processes of this machine, or compose containers."""

    local = "local"
    compose = "compose"


class Security(enum.StrEnum):
    """How the CLI and the components talk: mutual TLS with the identities `havm up`
    issued (state directory's pki/), or plaintext (`havm up --insecure`)."""

    mutual_tls = "mutual_tls"
    insecure = "insecure"


LOCAL = Runtime.local.value
COMPOSE = Runtime.compose.value
# The faults a component can be left in (Component.fault).
POWERED_OFF = "powered_off"
FROZEN = "frozen"
DEFAULT_STATE_DIR = ".havm"
ENV_MANAGER = "HAVM_MANAGER"
ENV_STATE_DIR = "HAVM_STATE_DIR"
ENV_IDENTITY = "HAVM_IDENTITY"
# The identity the CLI uses on a cluster of its state directory, unless told another.
DEFAULT_CLIENT_IDENTITY = "pki/clients/admin.pem"


class ContextError(Exception):
    """The running cluster cannot be found; the message says what to do."""


@dataclass
class Component:
    """One process of the local cluster, or one container of a compose cluster."""

    name: str  # "broker", "manager" or "agent:<host>"
    address: str  # host:port it listens on (for a container: where it is reached from here)
    pid: int = 0
    log: str = ""
    argv: list[str] = field(default_factory=list)
    # An injected fault the process is in: "powered_off", "frozen" or "".
    fault: str = ""
    # The container it runs in (compose runtime only).
    container: str = ""
    # Networks the container is disconnected from by `havm fault isolate`, each with the
    # address and the aliases it had there ({"address": ..., "aliases": [...]}), which
    # `havm fault heal` gives back, as a cable plugged in again.
    cut: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class ClusterContext:
    state_dir: str
    topology: str  # path of the resolved topology the manager runs with
    components: dict[str, Component] = field(default_factory=dict)
    # The topology file `havm up` was given; empty for the built-in default.
    topology_source: str = ""
    # Hosts `havm host add` started (each an "agent:<host>" and a "faultnet:<host>"
    # component): `havm up` starts them again although the topology does not name them.
    added_hosts: list[str] = field(default_factory=list)
    # Hosts of the topology `havm host remove` took out: `havm up` leaves them out.
    removed_hosts: list[str] = field(default_factory=list)
    runtime: str = LOCAL
    # The compose runtime's file, project and container engine (podman or docker).
    compose_file: str = ""
    project: str = ""
    engine: str = ""
    # A context file of a cluster started before identities existed is plaintext.
    security: str = Security.insecure.value

    @property
    def manager_address(self) -> str:
        return self.components["manager"].address

    @property
    def broker_address(self) -> str:
        return self.components["broker"].address

    def agents(self) -> list[Component]:
        return [c for n, c in sorted(self.components.items()) if n.startswith("agent:")]


def default_state_dir() -> Path:
    return Path(os.environ.get(ENV_STATE_DIR) or DEFAULT_STATE_DIR)


def context_path(state_dir: Path) -> Path:
    return state_dir / CONTEXT_FILE


def read_context(state_dir: Path) -> ClusterContext | None:
    path = context_path(state_dir)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ContextError(f"cannot read {path}: {exc}") from None
    try:
        components = {n: Component(**c) for n, c in raw["components"].items()}
        return ClusterContext(
            raw["state_dir"],
            raw["topology"],
            components,
            raw.get("topology_source", ""),
            list(raw.get("added_hosts", [])),
            list(raw.get("removed_hosts", [])),
            str(raw.get("runtime", LOCAL)),
            str(raw.get("compose_file", "")),
            str(raw.get("project", "")),
            str(raw.get("engine", "")),
            str(raw.get("security", Security.insecure.value)),
        )
    except (KeyError, TypeError) as exc:
        raise ContextError(f"{path} is not a havm context file ({exc})") from None


def write_context(ctx: ClusterContext) -> None:
    path = context_path(Path(ctx.state_dir))
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(ctx), indent=2) + "\n")
    os.replace(tmp, path)


def manager_address(explicit: str | None, state_dir: Path | None) -> str:
    """The manager to talk to: --manager, then $HAVM_MANAGER, then the context file."""
    if explicit:
        return explicit
    if os.environ.get(ENV_MANAGER):
        return os.environ[ENV_MANAGER]
    state_dir = state_dir or default_state_dir()
    ctx = read_context(state_dir)
    if ctx is None or "manager" not in ctx.components:
        raise ContextError(
            f"no running cluster found in {state_dir}: start one with `havm up`, or give "
            f"--manager ADDRESS or set {ENV_MANAGER}"
        )
    return ctx.manager_address


def admin_identity(ctx: ClusterContext) -> IdentityFile | None:
    """The admin identity `havm up` issued for the cluster of `ctx`; None when it is
    plaintext (started with --insecure)."""
    from havm.contract.identity import IdentityError, read_identity_file

    if ctx.security != Security.mutual_tls:
        return None
    try:
        return read_identity_file(Path(ctx.state_dir) / DEFAULT_CLIENT_IDENTITY)
    except IdentityError as exc:
        raise ContextError(f"the cluster's admin identity: {exc}") from None


def client_identity(explicit: Path | None, state_dir: Path | None) -> IdentityFile | None:
    """Who the CLI is to the manager: --identity (or $HAVM_IDENTITY), else the admin
    identity of the state directory's cluster when it runs mutual TLS, else nobody
    (plaintext, for a cluster started with --insecure)."""
    from havm.contract.identity import IdentityError, read_identity_file

    path = explicit or (Path(os.environ[ENV_IDENTITY]) if os.environ.get(ENV_IDENTITY) else None)
    if path is None:
        ctx = read_context(state_dir or default_state_dir())
        return admin_identity(ctx) if ctx is not None else None
    try:
        return read_identity_file(path)
    except IdentityError as exc:
        raise ContextError(f"--identity: {exc}") from None

"""The container engine (podman, or docker) as the CLI drives it: what a compose cluster's
faults, start-up and status need, each a bounded call of the engine's own command line.

Every call has a timeout, and every failure becomes one ContextError naming the
command and the engine's last line of output: a compose cluster is driven from the
user's shell, so what went wrong must read as a sentence, not a traceback.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

from havm.cli.context import ContextError

ENGINES = ("podman", "docker")
CALL_TIMEOUT_S = 60.0


class EngineMissing(ContextError):
    """The engine's command cannot be run at all."""


@dataclass(frozen=True)
class ContainerState:
    """What the engine says of one container."""

    name: str
    status: str  # "running", "paused", "exited", "created", ... (the engine's word)
    hostname: str
    labels: dict[str, str]
    # Network name -> the DNS aliases the container answers to on it.
    networks: dict[str, list[str]]
    # Network name -> the container's address on it.
    addresses: dict[str, str]
    # Container port ("50051/tcp") -> "HOST_IP:HOST_PORT" it is published at.
    published: dict[str, str]

    @property
    def running(self) -> bool:
        return self.status == "running"


def find_engine(preferred: str = "") -> str:
    """The engine's command: the one asked for, else podman, else docker."""
    for name in [preferred] if preferred else ENGINES:
        if shutil.which(name):
            return name
    wanted = preferred or " or ".join(ENGINES)
    raise ContextError(f"no container engine: {wanted} is not installed")


class ContainerEngine:
    def __init__(self, command: str) -> None:
        self.command = command

    def run(self, *args: str, timeout: float = CALL_TIMEOUT_S, stdin: str | None = None) -> str:
        argv = [self.command, *args]
        try:
            result = subprocess.run(
                argv,
                input=stdin,
                capture_output=True,
                text=True,
                timeout=timeout,
                stdin=None if stdin is not None else subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise ContextError(f"`{' '.join(argv)}` did not finish within {timeout:.0f} s") from None
        except OSError as exc:
            raise EngineMissing(f"cannot run {self.command}: {exc.strerror}") from None
        if result.returncode != 0:
            raise ContextError(f"`{' '.join(argv)}` failed: {last_line(result.stderr or result.stdout)}")
        return result.stdout

    def inspect(self, name: str) -> ContainerState:
        try:
            raw = json.loads(self.run("container", "inspect", name))[0]
        except EngineMissing:
            raise
        except ContextError:
            raise ContextError(f"no container named {name}") from None
        except (ValueError, IndexError):
            raise ContextError(f"{self.command} gave no description of container {name}") from None
        return _state(raw)

    def containers(self, label: str) -> list[ContainerState]:
        """Every container, running or not, that carries the label ("key=value")."""
        names = self.run("ps", "-a", "--filter", f"label={label}", "--format", "{{.Names}}").split()
        return [self.inspect(n) for n in sorted(names)]

    def kill(self, name: str) -> None:
        self.run("kill", name)

    def pause(self, name: str) -> None:
        self.run("pause", name)

    def unpause(self, name: str) -> None:
        self.run("unpause", name)

    def start(self, name: str) -> None:
        self.run("start", name)

    def stop(self, name: str, timeout: float) -> None:
        self.run("stop", "--time", str(round(timeout)), name, timeout=timeout + CALL_TIMEOUT_S)

    def disconnect(self, network: str, name: str) -> None:
        self.run("network", "disconnect", network, name)

    def connect(self, network: str, name: str, aliases: list[str], address: str = "") -> None:
        flags = [f"--alias={alias}" for alias in aliases] + ([f"--ip={address}"] if address else [])
        self.run("network", "connect", *flags, network, name)

    def write_file(self, name: str, path: str, text: str) -> None:
        """Write a file inside a running container, as its own user."""
        self.run("exec", "-i", name, "sh", "-c", 'cat > "$1"', "sh", path, stdin=text)

    def healthy(self, name: str) -> bool:
        """Run the container's own health check once (podman runs none by itself without
        systemd); docker runs its checks itself, so its last verdict is read instead."""
        if self.command == "podman":
            try:
                self.run("healthcheck", "run", name, timeout=15.0)
            except ContextError:
                return False
            return True
        raw = json.loads(self.run("container", "inspect", name))[0]
        return bool((raw.get("State", {}).get("Health") or {}).get("Status") == "healthy")


def _state(raw: dict[str, Any]) -> ContainerState:
    state = raw.get("State") or {}
    status = str(state.get("Status") or "unknown")
    if state.get("Paused"):
        status = "paused"
    config = raw.get("Config") or {}
    settings = raw.get("NetworkSettings") or {}
    identity = str(raw.get("Id", ""))[:12]
    networks = {
        str(net): [a for a in (about or {}).get("Aliases") or [] if a and not identity.startswith(a)]
        for net, about in (settings.get("Networks") or {}).items()
    }
    addresses = {
        str(net): str((about or {}).get("IPAddress") or "")
        for net, about in (settings.get("Networks") or {}).items()
    }
    published = {}
    for port, bindings in (settings.get("Ports") or {}).items():
        for binding in bindings or []:
            published[str(port)] = f"{binding.get('HostIp') or '0.0.0.0'}:{binding.get('HostPort')}"
            break
    return ContainerState(
        name=str(raw.get("Name", "")).lstrip("/"),
        status=status,
        hostname=str(config.get("Hostname") or ""),
        labels={str(k): str(v) for k, v in (config.get("Labels") or {}).items()},
        networks=networks,
        addresses=addresses,
        published=published,
    )


def last_line(text: str) -> str:
    """The last line of a tool's output that says anything."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"

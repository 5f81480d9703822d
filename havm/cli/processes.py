"""The processes of a local cluster: start them, tell whether they run and are healthy,
stop them without leaving any behind.

Shared by `havm up`/`down`, the fault commands and `havm host add`/`remove`, which all
start and stop the same kinds of components (broker, fault relays, agents, manager).
"""

from __future__ import annotations

import enum
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from havm.cli.context import Component
from havm.contract.identity import MANAGER_NAME, IdentityFile, sync_channel
from havm.healthcheck import grpc_serving, tcp_ready


class MqttBroker(enum.StrEnum):
    """Which MQTT broker `havm up` runs for the heartbeat network."""

    amqtt = "amqtt"  # embedded, in a Python process of its own
    mosquitto = "mosquitto"  # Debian's, as the containers run it


@dataclass(frozen=True)
class UpSettings:
    """Timeouts of `havm up` / `havm down`, in seconds, and how many hosts `up` starts."""

    healthy_timeout: float = 30.0
    poll_interval: float = 0.05
    stop_timeout: float = 10.0
    refresh_timeout: float = 15.0
    # Each host is a process of about 45 MiB: a topology of thousands would exhaust the
    # machine before it said why.
    max_hosts: int = 256
    # Plaintext gRPC and no identities: for debugging only.
    insecure: bool = False
    # The MQTT broker: the embedded amqtt, or mosquitto (as the containers run).
    mqtt_broker: str | None = None


class LocalClusterError(Exception):
    """`up` or `down` cannot proceed; the message says why."""


def is_relay(name: str) -> bool:
    """`havm up`'s fault relay, or the relay of a host `havm host add` started."""
    return name == "faultnet" or name.startswith("faultnet:")


# ----------------------------------------------------------------------------- processes


def is_running(component: Component) -> bool:
    """True when the recorded pid is alive and still runs this component's command."""
    if component.pid <= 0:
        return False
    try:
        cmdline = Path(f"/proc/{component.pid}/cmdline").read_bytes()
    except OSError:
        return False
    if not cmdline:  # a zombie: exited, not yet reaped
        return False
    return cmdline.split(b"\0")[: len(component.argv)] == [a.encode() for a in component.argv]


def spawn(component: Component) -> subprocess.Popen[bytes]:
    """Start a component in its own session so it outlives a detached `havm up`."""
    log = open(component.log, "ab")  # noqa: SIM115 - the child owns it from here on
    try:
        proc = subprocess.Popen(
            component.argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    finally:
        log.close()
    component.pid = proc.pid
    return proc


def stop_components(components: list[Component], timeout: float) -> list[str]:
    """SIGTERM every running component, SIGKILL what is left after `timeout`.

    Returns the names of the components that had to be killed.
    """
    running = [c for c in components if is_running(c)]
    for c in running:
        _signal_group(c.pid, signal.SIGTERM)
        # A frozen or powered-off process acts on SIGTERM only once it runs again.
        _signal_group(c.pid, signal.SIGCONT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(is_running(c) for c in running):
        time.sleep(0.05)
    killed = []
    for c in running:
        if is_running(c):
            killed.append(c.name)
        # The whole process group: nothing a component started may survive it.
        _signal_group(c.pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(is_running(c) for c in running):
        time.sleep(0.02)
    return killed


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def log_tail(component: Component, lines: int = 15) -> str:
    try:
        text = Path(component.log).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


# ----------------------------------------------------------------------------- health


def wait_healthy(
    components: list[Component],
    started: dict[str, subprocess.Popen[bytes]],
    settings: UpSettings,
    identity: IdentityFile | None = None,
) -> None:
    """Block until every component is healthy; raise naming those that are not.

    `started` holds the processes this `up` started: their exit is noticed at once.
    With `identity`, the health checks go over mutual TLS to the component's name.
    """
    pending = {c.name: c for c in components}
    deadline = time.monotonic() + settings.healthy_timeout
    while pending:
        for name, c in list(pending.items()):
            proc = started.get(name)
            if proc is not None and proc.poll() is not None:
                raise LocalClusterError(
                    f"{name} exited during start-up (status {proc.returncode}); "
                    f"last lines of {c.log}:\n{log_tail(c)}"
                )
            if proc is None and not is_running(c):
                raise LocalClusterError(f"{name} (pid {c.pid}) stopped while the cluster started")
            tcp_only = name == "broker" or is_relay(name)
            peer = MANAGER_NAME if name == "manager" else name.removeprefix("agent:")
            healthy = (
                tcp_ready(c.address) if tcp_only else grpc_serving(c.address, identity=identity, peer=peer)
            )
            if healthy:
                del pending[name]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise LocalClusterError(
                f"not healthy after {settings.healthy_timeout:.0f} s: {', '.join(sorted(pending))}"
            )
        time.sleep(settings.poll_interval)


def refresh_and_wait(manager_address: str, timeout: float, identity: IdentityFile | None = None) -> None:
    """Have the manager pull every agent's inventory once, so hosts show `ok` at once."""
    from havm.v1 import manager_pb2, manager_pb2_grpc

    with sync_channel(manager_address, identity, MANAGER_NAME) as channel:
        stub = manager_pb2_grpc.ManagerServiceStub(channel)
        job = stub.RefreshCluster(manager_pb2.RefreshClusterRequest(), timeout=timeout).job
        for update in stub.WatchJob(manager_pb2.WatchJobRequest(id=job.id), timeout=timeout):
            job = update.job
        if job.state == manager_pb2.JOB_STATE_FAILED:
            raise LocalClusterError(f"the first cluster refresh failed: {job.error}")

"""What the container tests share: is podman here, is the image built, and what an agent
in a container runs, asked inside its container (its gRPC port is not published).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
IMAGE = "localhost/havm:latest"
HAVM = [sys.executable, "-m", "havm.cli.main"]
ACTIVE = {"VM_STATE_RUNNING", "VM_STATE_PAUSED", "VM_STATE_STARTING"}

# Run by the container's own Python: the agent's own view of its VMs.
INVENTORY_SCRIPT = """
import json, grpc
from havm.v1 import agent_pb2, agent_pb2_grpc, common_pb2
with grpc.insecure_channel("127.0.0.1:50061") as channel:
    stub = agent_pb2_grpc.AgentServiceStub(channel)
    reply = stub.GetInventory(agent_pb2.AgentServiceGetInventoryRequest(), timeout=5)
print(json.dumps([
    {"id": v.spec.id, "name": v.spec.name, "state": common_pb2.VmState.Name(v.state),
     "lease": v.lease_generation}
    for v in reply.vms
]))
"""


def podman_env() -> dict[str, str]:
    """The environment to run podman (or a havm command that runs it) with: without the
    test run's marker (tests/conftest.py).

    podman starts helpers that serve the whole machine and outlive the command by design:
    aardvark-dns answers for every podman network, a compose cluster's too. Marked, they
    would count as this run's leaked processes and be killed at its end, taking the DNS
    of other clusters with them. What a test itself creates, its leftovers check finds.
    """
    return {key: value for key, value in os.environ.items() if key != "HAVM_TEST_RUN"}


def podman(*args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["podman", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env=podman_env(),
    )
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed: {result.stderr.strip()}")
    return result


def require_podman_and_image() -> None:
    """Skip where podman is absent (a laptop without it); fail where the image is not
    built, since then the suite's container phase skipped a step."""
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed: the container tests need podman and runc")
    if podman("image", "exists", IMAGE, check=False).returncode != 0:
        pytest.fail(f"the image {IMAGE} is not built: run scripts/build-images")


def agent_vms(container: str) -> list[dict[str, Any]] | None:
    """The VMs the agent in `container` runs, as it says; None if it does not answer."""
    result = subprocess.run(
        ["podman", "exec", "-i", container, "python", "-"],
        input=INVENTORY_SCRIPT,
        env=podman_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    if result.returncode != 0:
        return None
    return list(json.loads(result.stdout))


def active_copies(containers: list[str]) -> dict[str, dict[str, int]]:
    """VM name -> {host: lease generation} of every agent that answers and runs a copy."""
    copies: dict[str, dict[str, int]] = {}
    for container in containers:
        for vm in agent_vms(container) or []:
            if vm["state"] in ACTIVE:
                copies.setdefault(vm["name"], {})[container] = vm["lease"]
    return copies


def assert_no_vm_runs_twice(containers: list[str], context: str) -> None:
    """A copy with an older lease than another copy is already fenced (its next write
    stops it); two copies holding the newest lease are a split brain."""
    doubles = {
        name: held
        for name, held in active_copies(containers).items()
        if list(held.values()).count(max(held.values())) > 1
    }
    assert not doubles, f"VMs active on two hosts {context}: {doubles}"


def wait_for(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.2) -> float:
    """Poll until `check` holds; return the seconds it took."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(interval)
    return time.monotonic() - started

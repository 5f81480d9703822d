"""`havm up --runtime compose` in the foreground, as a container runtime or `timeout`
runs it: it follows the containers' logs, and SIGTERM removes the containers and ends
it cleanly. (Runs after test_compose.py, whose cluster has the same container names.)"""

from __future__ import annotations

import signal
import subprocess
import tempfile
import threading
import time

import pytest
from container_testkit import HAVM, REPO, podman, podman_env, require_podman_and_image

from havm.ports import free_port

pytestmark = pytest.mark.containers

PROJECT = "havm"


def project_containers() -> list[str]:
    label = f"label=com.docker.compose.project={PROJECT}"
    return podman("ps", "-a", "--filter", label, "--format", "{{.Names}}").stdout.split()


def test_sigterm_removes_the_containers_of_a_foreground_up() -> None:
    require_podman_and_image()
    assert not project_containers()
    state = tempfile.mkdtemp(prefix="havm-fg-")
    env = {**podman_env(), "HAVM_MANAGER_PORT": str(free_port())}
    proc = subprocess.Popen(
        [*HAVM, "--state-dir", state, "up", "--runtime", "compose"],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        deadline = time.monotonic() + 120
        while not any("following the logs" in line for line in lines):
            assert proc.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "".join(lines)
            time.sleep(0.2)
        assert len(project_containers()) == 7
        # The containers' own lines come through, each named after its container.
        refresh = [*HAVM, "--state-dir", state, "cluster", "refresh"]
        subprocess.run(refresh, env=env, cwd=REPO, timeout=60, capture_output=True, check=True)
        deadline = time.monotonic() + 30
        while not any(line.startswith("manager ") for line in lines):
            assert time.monotonic() < deadline, "".join(lines)
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0, "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(timeout=10)
        proc.stdout.close()  # type: ignore[union-attr]
        down = [*HAVM, "--state-dir", state, "down", "--volumes"]
        subprocess.run(down, env=env, cwd=REPO, timeout=300, check=False, capture_output=True)
        podman("volume", "rm", "-f", f"{PROJECT}_manager-db", f"{PROJECT}_san", check=False)
    output = "".join(lines)
    assert "havm: stopping (SIGTERM)" in output
    assert "removed the 7 containers of compose project havm; its volumes" in output
    assert not project_containers()

"""The console script at the process boundary, against a real local cluster (`havm up`):
a terminal on stderr (the progress bars), Ctrl-C, no terminal on stdin, the manager's
address and the state directory from the environment, the local processes in `status`."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster_harness import LocalCluster, start_cluster, stop_cluster

from havm.cli.context import ClusterContext, Component, write_context
from tests.cli.havm_runner import run_havm

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    topology = HERE / "console_topology.yaml"
    cluster = start_cluster(tmp_path_factory.mktemp("havm"), "--topology", str(topology))
    try:
        yield cluster
    finally:
        stop_cluster(cluster)


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("HAVM_") or k in ("HAVM_TEST_RUN", "HAVM_PORT_RANGE")
    }
    return {**env, "COLUMNS": "160", **extra}


def _manager(local: LocalCluster) -> str:
    return str(local.component("manager")["address"])


def _admin(local: LocalCluster) -> str:
    """The admin identity `havm up` issued: what a command given only --manager needs."""
    return str(local.state_dir / "pki" / "clients" / "admin.pem")


def _read_until(fd: int, wanted: str, timeout: float = 30) -> str:
    """What the terminal showed, read until `wanted` appears (or the other side closes)."""
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO once the other side is closed
            break
        if not chunk:
            break
        chunks.append(chunk)
        if wanted and wanted in b"".join(chunks).decode(errors="replace"):
            break
    return b"".join(chunks).decode(errors="replace")


def _drain_until_exit(fd: int, process: subprocess.Popen[str], timeout: float) -> str:
    """Keep reading the terminal (a full one would block the command's writes) until
    the process exits; return what it showed."""
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.05)
        if ready:
            try:
                chunks.append(os.read(fd, 65536))
            except OSError:  # EIO: the command closed its side; it is exiting
                break
    try:
        process.wait(timeout=max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        pass  # the caller sees it still running
    return b"".join(chunks).decode(errors="replace")


def _create(local: LocalCluster, name: str, memory_mb: int, *options: str) -> dict:
    return local.json(
        "vm", "create", name, "--ha", "--memory-mb", str(memory_mb), "--host", "node1", *options
    )


def test_migration_progress_bar_goes_to_a_terminal_stderr_only(local: LocalCluster, tmp_path: Path) -> None:
    _create(local, "bar1", 256, "--dirty-rate-mb-s", "5")  # about 5 s at 50 MB/s
    primary, secondary = pty.openpty()
    argv = ["--manager", _manager(local), "vm", "migrate", "bar1", "--to", "node2"]
    process = subprocess.Popen(
        [sys.executable, "-m", "havm.cli.main", *argv],
        cwd=tmp_path,
        env=_env(HAVM_IDENTITY=_admin(local)),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=secondary,
        text=True,
    )
    try:
        os.close(secondary)
        terminal = _drain_until_exit(primary, process, timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
        stdout, _ = process.communicate()
        os.close(primary)
    assert process.returncode == 0, terminal
    # stdout stays clean for pipes: the summary only.
    assert stdout.startswith("VM bar1 live-migrated node1 \N{RIGHTWARDS ARROW} node2\n"), stdout
    for text in ("live migration of bar1", "pre_copy, pass 1", " MB/s, ", " MB left", "%"):
        assert text in terminal, text


def test_ctrl_c_while_waiting_for_a_job_exits_130_quietly(local: LocalCluster, tmp_path: Path) -> None:
    _create(local, "slow1", 1024)  # 20 s at 50 MB/s: still running when interrupted
    job_id = local.json("vm", "migrate", "slow1", "--to", "node2", "--detach")["job_id"]
    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "havm.cli.main", "--manager", _manager(local), "job", "watch", job_id],
        cwd=tmp_path,
        env=_env(HAVM_IDENTITY=_admin(local)),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=secondary,
        text=True,
    )
    try:
        os.close(secondary)
        # The job's bar on the terminal: the command waits on the job's stream.
        assert "%" in _read_until(primary, "%"), "the command never showed its job"
        process.send_signal(signal.SIGINT)
        terminal = _drain_until_exit(primary, process, timeout=40)
    finally:
        if process.poll() is None:
            process.kill()
        stdout, _ = process.communicate()
        os.close(primary)
    assert process.returncode == 130, terminal
    assert "Traceback" not in terminal + stdout


def test_vm_delete_without_a_terminal_needs_no_prompt(local: LocalCluster) -> None:
    _create(local, "tmp1", 128, "--no-start")
    result = local.havm("vm", "delete", "tmp1")  # stdin is not a terminal
    assert result.code == 0, result.stderr
    assert result.stdout == "VM tmp1 deleted\n"
    assert "tmp1" not in {v["name"] for v in local.json("vm", "list")}


def test_manager_address_from_the_environment(local: LocalCluster, tmp_path: Path) -> None:
    environment = {"HAVM_MANAGER": _manager(local), "HAVM_IDENTITY": _admin(local)}
    result = run_havm(["vm", "list", "-o", "json"], tmp_path, environment)
    assert result.returncode == 0, result.stderr
    assert isinstance(result.json(), list)
    # Without an identity, a manager that serves mutual TLS only cannot be reached.
    result = run_havm(["vm", "list"], tmp_path, {"HAVM_MANAGER": _manager(local)})
    assert result.returncode == 1
    assert result.stderr == (
        f"error: cannot reach the manager at {_manager(local)} (it takes connections, but not plaintext "
        "ones: a cluster with mutual TLS needs --identity FILE)\n"
    )


def test_status_without_context_shows_the_manager(local: LocalCluster, tmp_path: Path) -> None:
    given = ["--manager", _manager(local), "--identity", _admin(local)]
    result = run_havm([*given, "status", "-o", "json"], tmp_path)
    assert result.returncode == 0, result.stderr
    status = result.json()
    assert status["components"] == []
    manager = status["manager"]
    assert manager["address"] == _manager(local) and manager["version"]
    assert manager["vmm_version"] == "2008r2"
    assert (manager["hosts_total"], manager["hosts_ok"]) == (2, 2)
    assert [c["name"] for c in manager["clusters"]] == ["hv1"]
    table = run_havm([*given, "status"], tmp_path)
    assert (
        table.returncode == 0
        and "hosts 2/2 ok" in table.stdout
        and "VMM 2008r2" in table.stdout
        and f"manager {_manager(local)}" in table.stdout
    )


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_status_lists_local_processes_from_the_context_file(local: LocalCluster, tmp_path: Path) -> None:
    real = run_havm(["--state-dir", str(local.state_dir), "status", "-o", "json"], tmp_path)
    assert real.returncode == 0, real.stderr
    components = {c["name"]: c for c in real.json()["components"]}
    assert {"manager", "broker", "agent:node1", "agent:node2"} <= set(components)
    assert all(c["alive"] for c in components.values())

    state_dir = tmp_path / "state"
    state_dir.mkdir()
    write_context(
        ClusterContext(
            state_dir=str(state_dir),
            topology=str(state_dir / "topology.yaml"),
            components={
                "manager": Component("manager", _manager(local), pid=os.getpid()),
                "agent:node1": Component("agent:node1", "127.0.0.1:7001", pid=_dead_pid()),
            },
        )
    )
    admin = {"HAVM_IDENTITY": _admin(local)}
    result = run_havm(["--state-dir", str(state_dir), "status", "-o", "json"], tmp_path, admin)
    assert result.returncode == 0, result.stderr
    components = {c["name"]: c for c in result.json()["components"]}
    assert components["manager"]["alive"] is True and components["manager"]["address"] == _manager(local)
    assert components["agent:node1"]["alive"] is False
    table = run_havm(["status"], tmp_path, {"HAVM_STATE_DIR": str(state_dir), **admin})
    assert table.returncode == 0, table.stderr
    assert "agent:node1" in table.stdout and "hosts 2/2 ok" in table.stdout

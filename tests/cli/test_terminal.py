"""Behaviour that needs a terminal or a signal: the progress bar and Ctrl-C."""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import sys
import time


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HAVM_") or k == "HAVM_TEST_RUN"}
    return env


def _read_all(fd: int) -> str:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO once the other side is closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def test_progress_bar_goes_to_a_terminal_stderr_only(manager, tmp_path):
    primary, secondary = pty.openpty()
    try:
        completed = subprocess.run(
            [sys.executable, "-m", "havm.cli.main", "--manager", manager.address, "vm", "resume", "web1"],
            cwd=tmp_path,
            env=_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=secondary,
            text=True,
            timeout=30,
        )
        os.close(secondary)
        secondary = -1
        terminal = _read_all(primary)
    finally:
        if secondary != -1:
            os.close(secondary)
        os.close(primary)
    assert completed.returncode == 0, terminal
    assert completed.stdout.strip() == "VM web1 resumed"  # stdout stays clean for pipes
    assert "%" in terminal  # the bar was drawn on the terminal


def test_ctrl_c_while_waiting_exits_130_quietly(manager, tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "havm.cli.main", "--manager", manager.address, "cluster", "refresh", "slow"],
        cwd=tmp_path,
        env=_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not any(name == "RefreshCluster" and r.target == "slow" for name, r in manager.fake.calls):
            assert time.monotonic() < deadline, "the command never started its job"
            time.sleep(0.05)
        time.sleep(0.3)  # let it enter the wait on the job stream
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr + stdout

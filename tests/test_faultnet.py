"""The fault relay: bytes flow through a path until it is cut, stop without the
connection closing while it is cut, and flow again when it heals."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from havm.faultnet import applied_path, write_faults
from havm.ports import free_port


class EchoServer:
    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(4096):
                conn.sendall(data)


def set_faults(proc: subprocess.Popen, faults: Path, cut: set[str], version: int) -> None:
    write_faults(faults, cut, version)
    os.kill(proc.pid, signal.SIGHUP)
    deadline = time.monotonic() + 5
    while not (applied_path(faults).exists() and applied_path(faults).read_text().strip() == str(version)):
        assert time.monotonic() < deadline, "the relay did not apply the faults"
        time.sleep(0.02)


def test_cut_and_heal(tmp_path: Path) -> None:
    echo = EchoServer()
    listen = f"127.0.0.1:{free_port()}"
    links, faults = tmp_path / "links.json", tmp_path / "faults.json"
    links.write_text(json.dumps({"management:h1": {"listen": listen, "target": f"127.0.0.1:{echo.port}"}}))
    argv = [sys.executable, "-m", "havm.faultnet", "--links", str(links), "--faults", str(faults)]
    with subprocess.Popen(argv, stderr=subprocess.PIPE) as proc:
        try:
            deadline = time.monotonic() + 10
            while not applied_path(faults).exists():
                assert time.monotonic() < deadline and proc.poll() is None, "relay did not start"
                time.sleep(0.02)
            host, port = listen.rsplit(":", 1)
            with socket.create_connection((host, int(port)), timeout=2) as conn:
                conn.sendall(b"one")
                assert conn.recv(16) == b"one"

                set_faults(proc, faults, {"management:h1"}, 1)
                conn.sendall(b"two")
                conn.settimeout(0.5)
                try:
                    got = conn.recv(16)
                except TimeoutError:
                    got = None
                assert got is None, "bytes crossed a cut path"

                set_faults(proc, faults, set(), 2)
                conn.settimeout(2)
                assert conn.recv(16) == b"two", "the held bytes arrive after the heal"
        finally:
            proc.terminate()
            assert proc.wait(timeout=10) == 0
        assert proc.stderr is not None and b"Traceback" not in proc.stderr.read()

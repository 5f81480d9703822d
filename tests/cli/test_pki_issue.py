"""`havm pki issue`: identity files for components run outside `havm up`, from the
same CA, and one sentence for what cannot be issued."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from havm.contract.identity import PeerIdentity, Role, read_identity_file


def havm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "havm.cli.main", *args], capture_output=True, text=True, timeout=60
    )


def test_identities_issued_by_hand_share_the_clusters_ca(tmp_path: Path) -> None:
    state = tmp_path / "state"
    for role, extra, out in (
        ("agent", ["--name", "node9", "--cluster", "cluster1"], "node9.pem"),
        ("manager", [], "manager.pem"),
        ("operator", ["--name", "ops-team"], "ops.pem"),
    ):
        done = havm(
            "--state-dir", str(state), "pki", "issue", "--role", role, *extra, "--out", str(tmp_path / out)
        )
        assert done.returncode == 0, done.stderr
        assert stat.S_IMODE((tmp_path / out).stat().st_mode) == 0o600
    node9, manager = read_identity_file(tmp_path / "node9.pem"), read_identity_file(tmp_path / "manager.pem")
    assert node9.identity == PeerIdentity(Role.AGENT, "node9", "cluster1")
    assert manager.identity == PeerIdentity(Role.MANAGER, "manager")
    assert read_identity_file(tmp_path / "ops.pem").identity == PeerIdentity(Role.OPERATOR, "ops-team")
    assert node9.ca_pem == manager.ca_pem == (state / "pki" / "ca.pem").read_bytes()


@pytest.mark.parametrize(
    ("args", "sentence"),
    [
        (
            ["--role", "reader", "--cluster", "c1"],
            "error: --cluster: only an agent's identity names a cluster",
        ),
        (["--role", "agent", "--name", "x" * 64], "error: --name: at most 63 characters, got 64"),
        (
            ["--role", "agent", "--name", "n1", "--out", "/nonexistent/dir/n1.pem"],
            "error: --out /nonexistent/dir/n1.pem: No such file or directory",
        ),
    ],
)
def test_what_cannot_be_issued_is_one_sentence(tmp_path: Path, args: list[str], sentence: str) -> None:
    out = [] if "--out" in args else ["--out", str(tmp_path / "x.pem")]
    done = havm("--state-dir", str(tmp_path / "s"), "pki", "issue", *args, *out)
    assert done.returncode == 1 and done.stderr.strip() == sentence, done.stderr

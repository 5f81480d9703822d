"""The compose runtime's refusals, each one sentence: a missing compose file, options
that do not go with it, and commands meant for a cluster of processes."""

from __future__ import annotations

import json
import os
from pathlib import Path

from havm_runner import one_error_line, run_havm


def compose_context(state: Path, engine: str = "podman") -> None:
    state.mkdir(parents=True, exist_ok=True)
    component = {"address": "", "container": "", "pid": 0, "log": "", "argv": [], "fault": "", "cut": {}}
    (state / "cluster.json").write_text(
        json.dumps(
            {
                "state_dir": str(state),
                "topology": "",
                "components": {
                    "manager": {
                        **component,
                        "name": "manager",
                        "address": "127.0.0.1:1",
                        "container": "manager",
                    },
                    "agent:node1": {**component, "name": "agent:node1", "container": "node1"},
                },
                "runtime": "compose",
                "compose_file": str(state / "compose.yaml"),
                "project": "havm",
                "engine": engine,
            }
        )
    )


def test_up_without_the_compose_file(tmp_path: Path) -> None:
    result = run_havm(
        ["--state-dir", "s", "up", "--runtime", "compose", "--compose-file", "no.yaml"], tmp_path
    )
    assert result.returncode == 1
    assert one_error_line(result) == (
        "error: no compose file no.yaml: give --compose-file (the repository's is deploy/compose.yaml)"
    )


def test_up_with_a_topology_for_compose(tmp_path: Path) -> None:
    result = run_havm(["up", "--runtime", "compose", "--topology", "t.yaml"], tmp_path)
    assert one_error_line(result) == (
        "error: --topology: the compose file mounts its own topology (deploy/topology.yaml)"
    )


def test_faults_of_a_cluster_in_containers(tmp_path: Path) -> None:
    state = tmp_path / "s"
    compose_context(state, engine="no-such-engine")
    local = run_havm(["--state-dir", "s", "fault", "--runtime", "local", "crash", "node1"], tmp_path)
    assert one_error_line(local) == f"error: the cluster of {state} runs in containers: drop --runtime local"
    unknown = run_havm(["--state-dir", "s", "fault", "crash", "node9"], tmp_path)
    assert one_error_line(unknown) == "error: no host named node9 in the local cluster (hosts: node1)"
    # The engine the context names is run; its absence is one sentence.
    missing = run_havm(["--state-dir", "s", "fault", "freeze", "node1"], tmp_path)
    assert one_error_line(missing).startswith("error: cannot run no-such-engine:")


def test_host_add_in_containers_needs_an_address(tmp_path: Path) -> None:
    compose_context(tmp_path / "s")
    result = run_havm(["--state-dir", "s", "host", "add", "node5", "--cluster", "cluster1"], tmp_path)
    assert one_error_line(result) == (
        "error: the cluster runs in containers: add the host as a service of its compose file, "
        "then register it with --address HOST:PORT"
    )


def fake_engine(directory: Path) -> dict[str, str]:
    """A podman that knows no container, and a compose tool whose `up` fails as when a
    port is taken; the environment that puts them first on PATH."""
    directory.mkdir()
    (directory / "podman").write_text('#!/bin/sh\ncase "$1" in ps) exit 0;; *) exit 125;; esac\n')
    (directory / "podman-compose").write_text(
        '#!/bin/sh\nfor a; do [ "$a" = down ] && exit 0; done\n'
        'echo "creating havm_broker"\n'
        'echo "Error: rootlessport listen tcp 127.0.0.1:50051: address already in use"\n'
        "exit 1\n"
    )
    for tool in directory.iterdir():
        tool.chmod(0o755)
    return {"PATH": f"{directory}:{os.environ['PATH']}"}


def test_a_failed_compose_up_is_one_sentence_and_down_still_finds_it(tmp_path: Path) -> None:
    env = fake_engine(tmp_path / "bin")
    (tmp_path / "compose.yaml").write_text("services: {}\n")
    up = run_havm(
        ["--state-dir", "s", "up", "--runtime", "compose", "--compose-file", "compose.yaml"], tmp_path, env
    )
    assert one_error_line(up) == (
        f"error: `up -d` of {tmp_path / 'compose.yaml'} failed: Error: rootlessport listen tcp "
        "127.0.0.1:50051: address already in use (`havm down` removes what started)"
    )
    # Recorded before the start: `havm down` finds the project and removes it.
    assert json.loads((tmp_path / "s" / "cluster.json").read_text())["project"] == "havm"
    down = run_havm(["--state-dir", "s", "down"], tmp_path, env)
    assert down.returncode == 0, down.stderr
    assert down.stdout.strip() == (
        "havm: removed the 0 containers of compose project havm; its volumes (the manager's database, "
        "the SAN) are kept"
    )
    assert not (tmp_path / "s" / "cluster.json").exists()


def test_a_local_cluster_is_not_started_over_a_compose_one(tmp_path: Path) -> None:
    compose_context(tmp_path / "s")
    result = run_havm(["--state-dir", "s", "up", "--detach"], tmp_path)
    assert one_error_line(result) == (
        f"error: {tmp_path / 's'} holds compose project havm: remove it with `havm down` "
        "or give another --state-dir"
    )

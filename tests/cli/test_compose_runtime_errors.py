"""The compose runtime's refusals, each one sentence: a missing compose file, options
that do not go with it, and commands meant for a cluster of processes."""

from __future__ import annotations

import json
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

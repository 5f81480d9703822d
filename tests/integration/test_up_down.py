"""`havm up` and `havm down` as a user meets them: bad topologies, a custom topology,
and no process left behind."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
from cluster_harness import HAVM, LocalCluster, alive, start_cluster, stop_cluster, wait_for

from havm.ports import free_port

# Starting and stopping whole clusters, interrupted or not: in the robustness phase
# (scripts/test); each test has clusters of its own.
pytestmark = [pytest.mark.integration, pytest.mark.robustness]

SMALL = """
version: 1
host_defaults:
  profile: esx
  cpu: {vendor: AuthenticAMD, model: Opteron 2384, features: [sse3, sse4a], cores: 4, mhz: 2700}
  memory_mb: 8192
  disks: [{name: local1, capacity_gb: 100}]
  networks: [{name: VM Network, bound_to: vSwitch0, vlan_id: 10}]
clusters:
  - name: esxcluster
    profile: esx
    nodes: [esx1, esx2, esx3]
    csvs: [{name: datastore1, capacity_gb: 500}]
hosts:
  - {name: esx1}
  - {name: esx2}
  - {name: esx3}
  - {name: esx4}
"""


def test_bad_topology_names_the_field(tmp_path: Path) -> None:
    topology = tmp_path / "bad.yaml"
    topology.write_text(SMALL.replace("memory_mb: 8192", "memory_mb: lots"))
    cluster = LocalCluster(tmp_path / "state")
    result = cluster.havm("up", "--detach", "--topology", str(topology))
    assert result.code == 1
    assert "memory_mb" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "state" / "cluster.json").exists()


def test_invalid_yaml_is_reported_with_its_line(tmp_path: Path) -> None:
    topology = tmp_path / "broken.yaml"
    topology.write_text("version: 1\nhosts: [\n")
    result = LocalCluster(tmp_path / "state").havm("up", "--detach", "--topology", str(topology))
    assert result.code == 1 and "line" in result.stderr and "Traceback" not in result.stderr


def test_missing_topology_file(tmp_path: Path) -> None:
    result = LocalCluster(tmp_path / "state").havm(
        "up", "--detach", "--topology", str(tmp_path / "nope.yaml")
    )
    assert result.code == 1 and "nope.yaml" in result.stderr


def test_a_topology_of_too_many_hosts_is_refused_before_anything_starts(tmp_path: Path) -> None:
    topology = tmp_path / "many.yaml"
    topology.write_text("version: 1\nhosts:\n" + "".join(f"  - {{name: h{i}}}\n" for i in range(300)))
    cluster = LocalCluster(tmp_path / "state")
    result = cluster.havm("up", "--detach", "--topology", str(topology))
    assert result.code == 1
    assert result.stderr.strip() == (
        f"error: topology {topology}: hosts: lists 300 hosts, more than 256 (havm up starts one process "
        "of about 45 MiB per host; --max-hosts N raises the limit)"
    )
    # With the limit raised, the count passes and the first host entry is judged.
    raised = cluster.havm("up", "--detach", "--topology", str(topology), "--max-hosts", "300")
    assert raised.code == 1 and "hosts[0].profile: is required" in raised.stderr
    assert not (tmp_path / "state" / "cluster.json").exists()


def test_a_topology_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    topology = tmp_path / "latin1.yaml"
    topology.write_bytes(SMALL.replace("version: 1", "version: 1 # Gerät").encode("latin-1"))
    result = LocalCluster(tmp_path / "state").havm("up", "--detach", "--topology", str(topology))
    assert result.code == 1
    assert result.stderr.startswith(f"error: topology {topology}: not UTF-8 text (byte 0xe4 at offset ")


def test_custom_esx_topology_up_and_down(tmp_path: Path) -> None:
    topology = tmp_path / "esx.yaml"
    topology.write_text(SMALL)
    cluster = start_cluster(tmp_path / "state", "--topology", str(topology))
    try:
        pids = cluster.running_pids()
        assert len(pids) == 7  # broker, fault relay, manager, 4 agents
        hosts = {h["name"]: h for h in cluster.json("host", "list")}
        assert set(hosts) == {"esx1", "esx2", "esx3", "esx4"}
        assert {h["profile"] for h in hosts.values()} == {"esx"}
        assert hosts["esx4"]["cluster"] is None
        assert hosts["esx1"]["networks"][0]["name"] == "VM Network"
        vm = cluster.json("vm", "create", "vc1", "--ha", "--memory-mb", "1024")
        assert vm["host"] in {"esx1", "esx2", "esx3"}
        again = cluster.ok("up", "--detach")
        assert "already running" in again.stdout
        assert cluster.running_pids() == pids
    finally:
        stop_cluster(cluster)
    assert not any(alive(p) for p in pids)
    status = cluster.havm("status")
    assert status.code == 1 and "Traceback" not in status.stderr


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_foreground_up_follows_logs_and_ctrl_c_or_sigterm_stops_everything(
    tmp_path: Path, stop: signal.Signals
) -> None:
    """Ctrl-C in a terminal, SIGTERM from a container runtime or `timeout`: the same stop,
    every component ending on its own SIGTERM (none killed)."""
    topology = tmp_path / "esx.yaml"
    topology.write_text(SMALL)
    state = tmp_path / "state"
    pids: list[int] = []
    argv = [*HAVM, "--state-dir", str(state), "up", "--topology", str(topology)]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        assert proc.stdout is not None
        try:
            seen = []
            for line in proc.stdout:
                seen.append(line)
                if "following the logs" in line:
                    break
            assert any("cluster healthy" in line for line in seen), "".join(seen)
            cluster = LocalCluster(state)
            pids = cluster.running_pids()
            assert len(pids) == 7
            # The components' own log lines come through, prefixed with their names.
            cluster.ok("cluster", "refresh")
            wait_for(lambda: "manager" in proc.stdout.readline(), what="a manager log line")
            proc.send_signal(stop)
            # Keep reading: the components' last lines must not fill the pipe and block it.
            rest, _ = proc.communicate(timeout=90)
            assert proc.returncode == 0, rest
            assert "havm: stopped 7 processes\n" in rest, rest
            if stop is signal.SIGTERM:
                assert "havm: stopping (SIGTERM)" in rest
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
                LocalCluster(state).havm("down")
    assert pids and not any(alive(p) for p in pids)


def test_a_non_loopback_agent_address_is_refused(tmp_path: Path) -> None:
    topology = tmp_path / "remote.yaml"
    topology.write_text(
        SMALL.replace("  - {name: esx4}", "  - {name: esx4, address: 'agent-3.agents:50051'}")
    )
    result = LocalCluster(tmp_path / "state").havm("up", "--detach", "--topology", str(topology))
    assert result.code == 1 and "Traceback" not in result.stderr
    assert "hosts[3].address" in result.stderr and "loopback" in result.stderr


def test_an_agent_address_in_the_topology_is_used(tmp_path: Path) -> None:
    port = free_port()
    topology = tmp_path / "fixed.yaml"
    topology.write_text(SMALL.replace("  - {name: esx4}", f"  - {{name: esx4, address: '127.0.0.1:{port}'}}"))
    cluster = start_cluster(tmp_path / "state", "--topology", str(topology))
    try:
        assert cluster.component("agent:esx4")["address"] == f"127.0.0.1:{port}"
        hosts = {h["name"]: h for h in cluster.json("host", "list")}
        assert hosts["esx4"]["state"] == "ok"
        # The manager reaches the agent through the host's management path in the relay.
        assert hosts["esx4"]["address"] == cluster.link("management:esx4")
        # Restarted later, the cluster comes back from the same topology file.
        cluster.kill9("agent:esx4")
        cluster.ok("up", "--detach")
        assert cluster.component("agent:esx4")["address"] == f"127.0.0.1:{port}"
    finally:
        stop_cluster(cluster)

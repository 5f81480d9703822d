"""deploy/ without running a container: the Dockerfile is hadolint clean, and the compose
file and the topology it mounts agree on every name, network and address, so that a
mistake shows here in a second rather than as a host that never turns `ok`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from havm.cli import container_faults
from havm.contract.topology_file import topology_from_yaml
from havm.healthcheck import main as healthcheck

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
NETWORKS = {"heartbeat", "management", "migration"}


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_the_dockerfile_is_hadolint_clean() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run(
        [str(hadolint), "--no-color", str(DEPLOY / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_host_of_the_topology_is_an_agent_service_named_after_it() -> None:
    topology = topology_from_yaml((DEPLOY / "topology.yaml").read_text())
    services = compose()["services"]
    agents = {
        name: s for name, s in services.items() if s.get("labels", {}).get("org.havm.component") == "agent"
    }
    assert sorted(agents) == sorted(h.name for h in topology.hosts)
    for host in topology.hosts:
        service = agents[host.name]
        # The agent takes its host from its host name; the fault commands find it by container name.
        assert service["hostname"] == service["container_name"] == host.name
        networks = service["networks"]
        assert set(networks) == NETWORKS
        # The manager and the other agents reach it by a name that only one network knows.
        assert host.address == f"{networks['management']['aliases'][0]}:50061"
        assert host.migration_address == f"{networks['migration']['aliases'][0]}:50061"
        assert "--listen" in service["command"] and "0.0.0.0:50061" in service["command"]


def test_the_networks_separate_the_traffic_kinds() -> None:
    document = compose()
    services = document["services"]
    assert set(document["networks"]) == NETWORKS
    assert services["broker"]["networks"] == ["heartbeat"]
    assert sorted(services["manager"]["networks"]) == ["heartbeat", "management"]
    assert "manager-db:/var/lib/havm/manager" in services["manager"]["volumes"]
    assert any(p.endswith(":50051") for p in services["manager"]["ports"])


def test_the_healthcheck_says_why_it_fails(capsys) -> None:  # type: ignore[no-untyped-def]
    assert healthcheck(["nowhere"]) == 2
    assert "address must be HOST:PORT, got 'nowhere'" in capsys.readouterr().err
    assert healthcheck(["127.0.0.1:1", "--timeout", "0.2"]) == 1
    assert "127.0.0.1:1 is not SERVING on gRPC health" in capsys.readouterr().err
    assert healthcheck(["--tcp", "127.0.0.1:1", "--timeout", "0.2"]) == 1
    assert "accepts no connection" in capsys.readouterr().err


def test_crash_points_are_armed_where_the_containers_keep_their_state() -> None:
    services = compose()["services"]

    def state_dir(service: dict) -> str:
        command = service["command"]
        return command[command.index("--state-dir") + 1]

    assert state_dir(services["manager"]) == container_faults.STATE_DIRS["manager"]
    assert state_dir(services["node1"]) == container_faults.STATE_DIRS["agent"]

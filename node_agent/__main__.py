"""`python -m node_agent` / `havm-agent`: parse arguments, load the host, run it.

    havm-agent --config HOST.json --state-dir DIR --listen HOST:PORT [--broker HOST:PORT]
               (--identity FILE | --insecure)
    havm-agent --topology TOPOLOGY.yaml [--host NAME] --san-root DIR --state-dir DIR ...

The first form reads the configuration `havm up` writes for each agent. The second
derives it from the cluster's topology, as `havm up` does: what a container needs,
where every agent gets the same topology file and is told only which host it is, or
takes it from its own host name (a compose service's `hostname`, a StatefulSet pod's
name).

Bad arguments and bad configuration files end here with one line on stderr and exit
code 2, so that `havm up` can show the problem as it is.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from havm.contract.identity import IdentityFile
    from node_agent.core.config import HostConfig

USAGE_ERROR = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: {message}\n")


class UsageError(Exception):
    """An argument or the configuration file is wrong; the message says which."""


def _address(value: str, option: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"{option}: expected HOST:PORT, got {value!r}")
    return host, int(port)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = _Parser(prog="havm-agent", description="Run one emulated Hyper-V or ESX host.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", type=Path, help="host configuration JSON")
    source.add_argument("--topology", type=Path, help="the cluster's topology YAML (with --host)")
    parser.add_argument(
        "--host", help="with --topology: which host of it this agent is (default: this machine's host name)"
    )
    parser.add_argument(
        "--san-root", type=Path, help="with --topology: the directory shared by every agent as the SAN"
    )
    parser.add_argument(
        "--heartbeat-secret",
        type=Path,
        help="with --topology: the cluster's heartbeat secret file, to sign heartbeats with this host's key",
    )
    security = parser.add_mutually_exclusive_group(required=True)
    security.add_argument(
        "--identity",
        type=Path,
        help="this host's identity file (its certificate, key and the cluster CA's certificate, PEM): "
        "mutual TLS, calls only from the manager, admins and, for migrations, nodes of its cluster",
    )
    security.add_argument(
        "--insecure",
        action="store_true",
        help="serve plaintext gRPC to anyone (for debugging only)",
    )
    parser.add_argument("--state-dir", required=True, type=Path, help="this host's files")
    parser.add_argument("--listen", required=True, help="gRPC address, HOST:PORT")
    parser.add_argument("--broker", help="MQTT broker, HOST:PORT")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return parser.parse_args(argv)


def _load_config(path: Path) -> HostConfig:
    from node_agent.adapters.config_file import host_config_from_json
    from node_agent.core.errors import ConfigError

    try:
        text = path.read_text()
    except OSError as exc:
        raise UsageError(f"--config: cannot read {path}: {exc.strerror}") from None
    try:
        json.loads(text)
    except ValueError as exc:
        raise UsageError(f"--config: {path} is not valid JSON: {exc}") from None
    try:
        config = host_config_from_json(text)
    except ConfigError as exc:
        raise UsageError(f"{path}: {exc.message}") from None
    if config.san_root is not None:
        config = dataclasses.replace(config, san_root=str(Path(config.san_root).resolve()))
    return config


def _read_secret(path: Path | None) -> bytes:
    from havm.contract.heartbeat_auth import SecretFileError, read_secret_file

    if path is None:
        return b""
    try:
        return read_secret_file(path)
    except SecretFileError as exc:
        raise UsageError(f"--heartbeat-secret: {exc}") from None


def _read_identity(path: Path | None, host: str, cluster: str | None) -> IdentityFile | None:
    from havm.contract.identity import IdentityError, Role, read_own_identity

    if path is None:
        return None
    try:
        return read_own_identity(path, Role.AGENT, host, cluster)
    except IdentityError as exc:
        raise UsageError(f"--identity: {exc}") from None


def _config_from_topology(
    path: Path, host: str | None, san_root: Path | None, secret_file: Path | None
) -> HostConfig:
    from havm.contract.fields import TopologyError
    from havm.contract.host_config import agent_config, agent_config_json
    from havm.contract.topology_file import TopologyFileError, load_topology_file
    from node_agent.adapters.config_file import host_config_from_json

    if san_root is None:
        raise UsageError("--topology needs --san-root DIR: the directory every agent shares as the SAN")
    try:
        topology = load_topology_file(path)
    except (TopologyFileError, TopologyError) as exc:
        raise UsageError(f"--topology {path}: {exc}") from None
    name = host or socket.gethostname()
    spec = next((h for h in topology.hosts if h.name == name), None)
    if spec is None:
        names = ", ".join(h.name for h in topology.hosts)
        given = "--host" if host else "this machine's host name (give --host)"
        raise UsageError(f"{given}: {path} has no host named {name!r} (hosts: {names})")
    secret = _read_secret(secret_file)
    return host_config_from_json(agent_config_json(agent_config(topology, spec, san_root.resolve(), secret)))


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        _address(args.listen, "--listen")
        broker = _address(args.broker, "--broker") if args.broker else None
        if args.config is not None:
            if args.host or args.san_root or args.heartbeat_secret:
                raise UsageError("--host, --san-root and --heartbeat-secret go with --topology, not --config")
            config = _load_config(args.config)
        else:
            config = _config_from_topology(args.topology, args.host, args.san_root, args.heartbeat_secret)
        identity = _read_identity(args.identity, config.name, config.cluster)
        try:
            args.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"--state-dir: cannot create {args.state_dir}: {exc.strerror}") from None
    except UsageError as exc:
        print(f"havm-agent: {exc}", file=sys.stderr)
        return USAGE_ERROR

    from node_agent.adapters.logs import setup_logging
    from node_agent.app.runner import AgentOptions, run_agent

    setup_logging(config.name, args.log_level)
    if identity is None:
        import logging

        logging.getLogger("node_agent.main").warning(
            "INSECURE: --insecure serves plaintext gRPC; any process that reaches %s can order this "
            "host's VMs about",
            args.listen,
        )
    options = AgentOptions(
        config=config,
        state_dir=args.state_dir.resolve(),
        listen=args.listen,
        broker=broker,
        identity=identity,
    )
    return asyncio.run(run_agent(options))


if __name__ == "__main__":
    sys.exit(main())

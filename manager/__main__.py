"""`python -m manager` / `havm-manager`: parse arguments, compose, serve until SIGTERM.

    python -m manager --topology TOPOLOGY.yaml --state-dir DIR --listen 127.0.0.1:PORT
                      (--identity FILE | --insecure)
                      [--broker HOST:PORT] [--refresh-interval 5] [--log-level info]

With --identity the manager serves its API over mutual TLS to client identities only
(by role: admin, operator, reader) and calls agents over mutual TLS as the manager.

The timings come from the topology's `timing:` section; the timing flags, when given,
win over it.

With --broker the manager hears the agents' heartbeats and judges host health (failure
detection, fencing, failover restart); without it, only refreshes judge hosts.

Bad arguments or a bad topology print one line naming the field and exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import NoReturn, TypedDict

from havm.contract.fields import TopologyError
from havm.contract.heartbeat_auth import SecretFileError, read_secret_file
from havm.contract.identity import IdentityError, IdentityFile, Role, read_own_identity
from havm.contract.timing import Timing, timing_problems
from havm.contract.topology import Topology
from havm.contract.topology_file import TopologyFileError, load_topology_file
from havm.mqtt_socket_race import quiet_closed_socket_race
from manager.adapters.agent_client import AgentClient
from manager.adapters.grpc_server import ManagerServer
from manager.adapters.mqtt import Authenticator, MqttLink
from manager.adapters.sqlite_store import SqliteStore
from manager.app.crash_points import CrashPoints
from manager.app.manager import ManagerApp
from manager.core.capacity import ReserveReport
from manager.core.errors import FailedPreconditionError
from manager.core.levels import VmmVersion
from manager.core.model import Event
from manager.core.placement import PlacementGoal, RatingWeights
from manager.core.settings import Settings

log = logging.getLogger("manager.main")
EXIT_USAGE = 2
LOG_LEVELS = ("debug", "info", "warning", "error")


class UtcFormatter(logging.Formatter):
    """`2026-11-25T17:00:00.123Z INFO manager.module message`, one line per record."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{stamp}.{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text.replace("\n", " | ")


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(UtcFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


class UsageError(Exception):
    """A bad argument or topology: one line for stderr."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = _Parser(prog="havm-manager", description="The havm cluster manager.")
    parser.add_argument("--topology", required=True, type=Path, help="topology YAML file")
    parser.add_argument("--state-dir", required=True, type=Path, help="where manager.db lives")
    parser.add_argument("--listen", required=True, help="host:port to serve ManagerService on")
    parser.add_argument(
        "--refresh-interval",
        type=float,
        default=None,
        help=f"seconds between periodic refreshes (default: the topology's timing.refresh_interval_s, "
        f"else {Timing.refresh_interval_s:g})",
    )
    security = parser.add_mutually_exclusive_group(required=True)
    security.add_argument(
        "--identity",
        type=Path,
        help="the manager's identity file (its certificate, key and the cluster CA's certificate, PEM)",
    )
    security.add_argument(
        "--insecure", action="store_true", help="plaintext gRPC, no identities checked (for debugging only)"
    )
    parser.add_argument("--broker", default=None, help="MQTT broker host:port (heartbeats, events)")
    parser.add_argument(
        "--heartbeat-secret",
        type=Path,
        default=None,
        help="file holding the cluster's heartbeat secret (64 hex digits): heartbeats and statuses "
        "not signed with a key derived from it are ignored (default: none are checked)",
    )
    parser.add_argument(
        "--heartbeat-interval",
        type=float,
        default=None,
        help=f"seconds between two heartbeats of an agent "
        f"(default: the topology's timing.heartbeat_interval_s, "
        f"else {Timing.heartbeat_interval_s:g})",
    )
    parser.add_argument(
        "--heartbeat-threshold",
        type=int,
        default=None,
        help=f"missed heartbeats after which a host is suspect "
        f"(default: the topology's timing.heartbeat_threshold, "
        f"else {Timing.heartbeat_threshold:g})",
    )
    parser.add_argument(
        "--probe-timeout",
        type=float,
        default=None,
        help=f"seconds the probe of a suspect host may take (default: the topology's timing.probe_timeout_s, "
        f"else {Timing.probe_timeout_s:g})",
    )
    parser.add_argument(
        "--placement-goal",
        default=None,
        choices=[goal.value for goal in PlacementGoal],
        help="spread VMs over the hosts, or fill one host before the next "
        "(default: the topology's placement.goal, else load_balancing)",
    )
    parser.add_argument(
        "--memory-weight",
        type=float,
        default=None,
        help="how much free memory counts in a host's stars (default: the topology's, else 1)",
    )
    parser.add_argument(
        "--cpu-weight",
        type=float,
        default=None,
        help="how much CPU load counts in a host's stars (default: the topology's, else 1)",
    )
    parser.add_argument("--log-level", default="info", choices=LOG_LEVELS)
    args = parser.parse_args(argv)
    for flag, weight in (("--memory-weight", args.memory_weight), ("--cpu-weight", args.cpu_weight)):
        if weight is not None and (not math.isfinite(weight) or not 0 <= weight <= 100):
            raise UsageError(f"{flag}: must be a number from 0 to 100, got {weight}")
    if args.broker is not None:
        b_host, b_sep, b_port = args.broker.rpartition(":")
        if not b_sep or not b_host or not b_port.isdigit() or not 0 < int(b_port) <= 65535:
            raise UsageError(f"--broker: must be host:port, got {args.broker!r}")
    if args.refresh_interval is not None and (
        not math.isfinite(args.refresh_interval) or args.refresh_interval <= 0
    ):
        raise UsageError(
            f"--refresh-interval: must be a positive number of seconds, got {args.refresh_interval}"
        )
    for flag, value in (
        ("--heartbeat-interval", args.heartbeat_interval),
        ("--probe-timeout", args.probe_timeout),
    ):
        if value is not None and (not math.isfinite(value) or value <= 0):
            raise UsageError(f"{flag}: must be a positive number of seconds, got {value}")
    if args.heartbeat_threshold is not None and not 1 <= args.heartbeat_threshold <= 1000:
        raise UsageError(f"--heartbeat-threshold: must be from 1 to 1000, got {args.heartbeat_threshold}")
    host, sep, port = args.listen.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"--listen: must be host:port, got {args.listen!r}")
    return args


def load_topology(path: Path) -> Topology:
    try:
        return load_topology_file(path)
    except (TopologyFileError, TopologyError) as error:
        raise UsageError(f"--topology {path}: {error}") from None


class PlacementSettings(TypedDict):
    placement_goal: PlacementGoal
    rating_weights: RatingWeights


def placement_settings(args: argparse.Namespace, topology: Topology) -> PlacementSettings:
    """The placement goal and rating weights: the flags, else the topology's section."""
    section = topology.placement
    memory = section.memory_weight if args.memory_weight is None else args.memory_weight
    cpu = section.cpu_weight if args.cpu_weight is None else args.cpu_weight
    if memory + cpu <= 0:
        raise UsageError("--memory-weight and --cpu-weight: at least one must be above 0")
    return PlacementSettings(
        placement_goal=PlacementGoal(args.placement_goal or section.goal),
        rating_weights=RatingWeights(memory=memory, cpu=cpu),
    )


def effective_timing(args: argparse.Namespace, topology: Topology) -> Timing:
    """The topology's timing section with each timing flag given on top: the flags win.
    The topology's section was checked as a whole when it was read; a combination the
    flags make that breaks a rule is logged, not refused, as flags are for experiments."""
    flags = {
        "refresh_interval_s": args.refresh_interval,
        "heartbeat_interval_s": args.heartbeat_interval,
        "heartbeat_threshold": args.heartbeat_threshold,
        "probe_timeout_s": args.probe_timeout,
    }
    timing = replace(topology.timing, **{k: v for k, v in flags.items() if v is not None})
    if timing != topology.timing:
        for _, sentence in timing_problems(timing):
            log.warning("with the timing flags given: %s", sentence)
    return timing


async def serve(args: argparse.Namespace, topology: Topology) -> None:
    timing = effective_timing(args, topology)
    settings = Settings(
        refresh_interval_s=timing.refresh_interval_s,
        heartbeat_interval_s=timing.heartbeat_interval_s,
        heartbeat_threshold=timing.heartbeat_threshold,
        probe_timeout_s=timing.probe_timeout_s,
        **placement_settings(args, topology),
        vmm_version=VmmVersion(topology.vmm_version),
    )
    store = SqliteStore(args.state_dir / "manager.db")
    agents = AgentClient(settings, identity=args.identity)
    app = ManagerApp(store, agents, settings, crash_points=CrashPoints(args.state_dir))
    try:
        app.load(topology)
    except FailedPreconditionError as error:
        store.close()
        raise UsageError(error.message) from None
    link: MqttLink | None = None
    if args.broker is not None:
        ha = app.enable_ha()
        b_host, _, b_port = args.broker.rpartition(":")
        authenticator = Authenticator(args.heartbeat_secret) if args.heartbeat_secret else None
        if authenticator is None:
            log.warning("no --heartbeat-secret: heartbeats and statuses are taken unsigned from anyone")
        link = MqttLink(
            b_host, int(b_port), settings, ha.on_message, ha.on_connection, authenticator, ha.on_refused
        )
        mqtt_link = link

        def publish(event: Event) -> None:
            host = app.store.get_host(event.host) if event.kind == "host_state" else None
            mqtt_link.publish_event(event, host.state.value if host is not None else None)
            report = app.capacity.last(event.cluster) if event.kind == "cluster_state" else None
            if report is not None:
                mqtt_link.publish_cluster_state(event.cluster, cluster_state_payload(report))

        app.events.add_publisher(publish)
    server = ManagerServer(app, args.listen, args.identity)
    if args.identity is None:
        log.warning(
            "INSECURE: --insecure serves the API in plaintext to anyone who reaches %s and calls "
            "agents without proving who orders",
            args.listen,
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    quiet_closed_socket_race(loop, log)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    log.info("serving ManagerService on %s (state in %s)", args.listen, args.state_dir)
    app.start_background()
    link_task = asyncio.get_running_loop().create_task(link.run()) if link is not None else None
    try:
        await stop.wait()
        log.info("stopping")
    finally:
        if link_task is not None:
            link_task.cancel()
            await asyncio.gather(link_task, return_exceptions=True)
        await server.stop(settings.shutdown_grace_s)
        await app.stop()
        store.close()
        log.info("stopped")


def cluster_state_payload(report: ReserveReport) -> dict[str, object]:
    """The retained `havm/v1/state/clusters/NAME` message."""
    over = report.overcommit
    return {
        "state": report.state.value,
        "reserve": report.reserve,
        "overcommit": (
            {
                "failed_nodes": list(over.failed_nodes),
                "unplaced_vms": list(over.unplaced_vms),
                "detail": over.detail,
            }
            if over is not None
            else None
        ),
    }


def read_heartbeat_secret(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return read_secret_file(path)
    except SecretFileError as error:
        raise UsageError(f"--heartbeat-secret: {error}") from None


def read_identity(path: Path | None) -> IdentityFile | None:
    if path is None:
        return None
    try:
        return read_own_identity(path, Role.MANAGER)
    except IdentityError as error:
        raise UsageError(f"--identity: {error}") from None


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parse_args(argv)
        setup_logging(args.log_level)
        topology = load_topology(args.topology)
        args.heartbeat_secret = read_heartbeat_secret(args.heartbeat_secret)
        args.identity = read_identity(args.identity)
    except UsageError as error:
        print(f"havm-manager: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    try:
        asyncio.run(serve(args, topology))
    except UsageError as error:
        print(f"havm-manager: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as error:
        print(f"havm-manager: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

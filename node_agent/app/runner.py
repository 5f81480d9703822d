"""Runs one emulated host: recover its VMs, serve gRPC, announce it, stop cleanly.

The order matters: VMs are found again before the server reports SERVING, so the
first inventory a manager pulls is already complete. On SIGTERM, or once a Shutdown
call is answered, the server stops taking calls before the guests stop (a Shutdown
shuts them down cleanly first, app.leave), and the broker hears `stopped` last.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import grpc

from havm.contract.broker_access import host_password, host_user
from havm.contract.heartbeat_auth import signed
from havm.contract.identity import IdentityFile, aio_channel
from havm.mqtt_socket_race import quiet_closed_socket_race
from node_agent.adapters.allocator import keep_large_buffers
from node_agent.adapters.api_roles import AgentAdmission
from node_agent.adapters.clock import SYSTEM_CLOCK
from node_agent.adapters.files import HostFiles
from node_agent.adapters.grpc_agent import BULK_TRANSFER_OPTIONS, MAX_MESSAGE_BYTES
from node_agent.adapters.grpc_server import AgentServer
from node_agent.adapters.host_changes_file import HostChangesFile
from node_agent.app.host import VmHost
from node_agent.app.host_admin import with_kept_changes
from node_agent.app.leave import StopRequests, shut_guests_down
from node_agent.core.broker import BrokerSession
from node_agent.core.config import HostConfig
from node_agent.core.errors import AgentError
from node_agent.core.views import Presence, heartbeat_topic, status_payload, status_topic

if TYPE_CHECKING:
    from node_agent.app.status import StatusPublisher

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AgentOptions:
    config: HostConfig
    state_dir: Path
    listen: str
    broker: tuple[str, int] | None = None
    # The host's certificate and key: mutual TLS on its server and its migration
    # streams; None serves plaintext to anyone (--insecure).
    identity: IdentityFile | None = None


class AgentServerPort(Protocol):
    """Serves AgentService for one host (the gRPC server, or a scenario's in-process one)."""

    @property
    def address(self) -> str: ...

    async def start(self) -> None: ...

    async def stop(self, grace_s: float) -> None: ...


@dataclass(frozen=True)
class BrokerSessionParams:
    """What one connection to the broker is opened with."""

    client_id: str
    topic: str
    offline_payload: bytes
    keepalive_s: int
    timeout_s: float
    echo_topic: str
    # The broker login (havm.contract.broker_access); None: anonymous.
    username: str | None = None
    password: str | None = None


@dataclass(frozen=True)
class AgentTransports:
    """How the agent reaches the world: by default a gRPC server, an MQTT client and the
    process's signals; a scenario gives in-process ones running on virtual time."""

    server: Callable[[VmHost, str, Callable[[str], None]], AgentServerPort]
    broker_session: Callable[[BrokerSessionParams], BrokerSession]
    handle_signals: bool = True
    # The clock port's two readings (node_agent.core.clock); the system's by default.
    clock: Callable[[], float] = SYSTEM_CLOCK.wall
    monotonic: Callable[[], float] = SYSTEM_CLOCK.ticks
    # How live migration opens a stream to a peer agent (host name, address); None: a
    # plaintext gRPC socket.
    peer_channel: Callable[[str, str], Any] | None = None
    # How the agent dies at an armed crash point; None: the process exits.
    die: Callable[[], None] | None = None


def process_transports(
    broker: tuple[str, int] | None, config: HostConfig | None = None, identity: IdentityFile | None = None
) -> AgentTransports:
    """The real ones: gRPC on a socket (mutual TLS with `identity`), the MQTT broker at
    `broker`, POSIX signals."""

    def server(host: VmHost, listen: str, leave: Callable[[str], None]) -> AgentServerPort:
        admission = (
            AgentAdmission(config.name, config.cluster, config.migration_peer_clusters)
            if config is not None
            else None
        )
        return AgentServer(host, listen, leave=leave, identity=identity, admission=admission)

    def peer_channel(host_name: str, address: str) -> grpc.aio.Channel:
        return aio_channel(address, identity, host_name, BULK_TRANSFER_OPTIONS)

    def broker_session(params: BrokerSessionParams) -> BrokerSession:
        # Imported here: the MQTT client is only loaded by agents that use a broker.
        from node_agent.adapters.mqtt_status import MqttBrokerSession

        assert broker is not None
        hostname, port = broker
        return MqttBrokerSession(
            hostname,
            port,
            client_id=params.client_id,
            topic=params.topic,
            offline_payload=params.offline_payload,
            keepalive_s=params.keepalive_s,
            timeout_s=params.timeout_s,
            echo_topic=params.echo_topic,
            username=params.username,
            password=params.password,
        )

    return AgentTransports(
        server, broker_session, peer_channel=peer_channel if identity is not None else None
    )


async def run_agent(options: AgentOptions, transports: AgentTransports | None = None) -> int:
    """Run until SIGTERM, SIGINT or a Shutdown call; return the process exit code."""
    settings = options.config.settings
    transports = transports or process_transports(options.broker, options.config, options.identity)
    if transports.handle_signals:
        # Live migration messages: twice the largest, for the copies serialisation makes.
        keep_large_buffers(2 * MAX_MESSAGE_BYTES)
    # An administrator's changes on the host win over the configuration file's networks
    # and volumes: the host is what was last made of it.
    config = with_kept_changes(options.config, HostChangesFile(options.state_dir))
    files = HostFiles(config, options.state_dir)
    try:
        files.prepare()
        host = VmHost(
            config,
            files,
            clock=transports.clock,
            state_dir=options.state_dir,
            monotonic=transports.monotonic,
            peer_channel=transports.peer_channel,
            die=transports.die,
        )
        stops = StopRequests(host)
        server = transports.server(host, options.listen, stops.leave)
    except (AgentError, OSError) as exc:
        log.error("cannot start: %s", getattr(exc, "message", exc))
        return 1
    if transports.handle_signals:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stops.on_signal, sig.name)
    quiet_closed_socket_race(asyncio.get_running_loop(), log)
    await host.recover()
    await server.start()
    log.info("serving AgentService on %s (%s, boot %s)", server.address, config.profile.value, host.boot_id)

    publisher = None
    watch = None
    if options.broker is not None:
        from node_agent.app.isolation import IsolationWatch

        status = _status_publisher(options, server.address, host, transports)
        status.start()
        watch = IsolationWatch(host, settings, broker_contact=lambda: status.last_contact)
        watch.start()
        publisher = status

    request = await stops.wait()
    log.info("stopping")
    if watch is not None:
        await watch.stop()
    # In-flight calls, the Shutdown call among them, get their answer within the grace.
    await server.stop(settings.grpc_stop_grace_s)
    if request.shut_guests_down:
        await shut_guests_down(host)
    await host.stop()
    if publisher is not None:
        await publisher.stop(request.reason)
    log.info("stopped")
    return 0


def _status_publisher(
    options: AgentOptions, address: str, host: VmHost, transports: AgentTransports
) -> StatusPublisher:
    from node_agent.app.status import StatusPublisher

    config, settings = options.config, options.config.settings
    assert options.broker is not None
    boot_id = host.boot_id
    hostname, port = options.broker
    topic = status_topic(config.name)
    clock = host.clock

    def seal(payload: dict[str, object]) -> dict[str, object]:
        """Signed with this host's key, with its name and the time it was written; as is
        where the host has no key."""
        if not config.heartbeat_key:
            return payload
        return signed({**payload, "host": config.name, "time": clock()}, config.heartbeat_key)

    offline = seal(status_payload(config, address, boot_id, Presence.OFFLINE))
    params = BrokerSessionParams(
        client_id=f"havm-agent-{config.name}",
        topic=topic,
        offline_payload=json.dumps(offline).encode(),
        keepalive_s=settings.mqtt_keepalive_s,
        timeout_s=settings.mqtt_timeout_s,
        echo_topic=heartbeat_topic(config.name),
        # A host with a heartbeat key logs in with the password derived from it.
        username=host_user(config.name) if config.heartbeat_key else None,
        password=host_password(config.heartbeat_key) if config.heartbeat_key else None,
    )

    def stopped(reason: str) -> dict[str, object]:
        return seal(status_payload(config, address, boot_id, Presence.STOPPED, reason))

    return StatusPublisher(
        settings,
        lambda: transports.broker_session(params),
        online=status_payload(config, address, boot_id, Presence.ONLINE),
        stopped=stopped,
        seal=seal,
        broker=f"{hostname}:{port}",
        host=config.name,
        boot_id=boot_id,
        load=host.load,
        clock=host.clock,
    )

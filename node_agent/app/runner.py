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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from node_agent.adapters.allocator import keep_large_buffers
from node_agent.adapters.files import HostFiles
from node_agent.adapters.grpc_agent import MAX_MESSAGE_BYTES
from node_agent.adapters.grpc_server import AgentServer
from node_agent.app.host import VmHost
from node_agent.app.leave import StopRequests, shut_guests_down
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


async def run_agent(options: AgentOptions) -> int:
    """Run until SIGTERM, SIGINT or a Shutdown call; return the process exit code."""
    config, settings = options.config, options.config.settings
    # Live migration messages: twice the largest, for the copies serialisation makes.
    keep_large_buffers(2 * MAX_MESSAGE_BYTES)
    files = HostFiles(config, options.state_dir)
    try:
        files.prepare()
        host = VmHost(config, files, state_dir=options.state_dir)
        stops = StopRequests(host)
        server = AgentServer(host, options.listen, leave=stops.leave)
    except (AgentError, OSError) as exc:
        log.error("cannot start: %s", getattr(exc, "message", exc))
        return 1
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stops.on_signal, sig.name)
    await host.recover()
    await server.start()
    log.info("serving AgentService on %s (%s, boot %s)", server.address, config.profile.value, host.boot_id)

    publisher = None
    watch = None
    if options.broker is not None:
        from node_agent.app.isolation import IsolationWatch

        status = _status_publisher(options, server.address, host)
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


def _status_publisher(options: AgentOptions, address: str, host: VmHost) -> StatusPublisher:
    # Imported here: the MQTT client is only loaded by agents that use a broker.
    from node_agent.adapters.mqtt_status import BrokerSession
    from node_agent.app.status import StatusPublisher

    config, settings = options.config, options.config.settings
    assert options.broker is not None
    boot_id = host.boot_id
    hostname, port = options.broker
    topic = status_topic(config.name)
    offline = status_payload(config, address, boot_id, Presence.OFFLINE)

    def open_session() -> BrokerSession:
        return BrokerSession(
            hostname,
            port,
            client_id=f"havm-agent-{config.name}",
            topic=topic,
            offline_payload=json.dumps(offline).encode(),
            keepalive_s=settings.mqtt_keepalive_s,
            timeout_s=settings.mqtt_timeout_s,
            echo_topic=heartbeat_topic(config.name),
        )

    def stopped(reason: str) -> dict[str, object]:
        return status_payload(config, address, boot_id, Presence.STOPPED, reason)

    return StatusPublisher(
        settings,
        open_session,
        online=status_payload(config, address, boot_id, Presence.ONLINE),
        stopped=stopped,
        broker=f"{hostname}:{port}",
        host=config.name,
        boot_id=boot_id,
        load=host.load,
        clock=host.clock,
    )

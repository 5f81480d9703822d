"""The local cluster's network, with switches to cut it: a TCP relay per path.

A real cluster has two networks, and faults cut one or the other: the heartbeat network
(agents to the MQTT broker) and the management network (manager to agents over gRPC).
On one machine both are loopback, which never fails. `havm up` therefore routes each
host's two paths through this relay process, one listening port per path, so that
`havm fault isolate HOST --from heartbeat|management|all` can cut them the way a
pulled cable does: nothing is closed, bytes simply stop flowing (both ends see
silence, keepalives expire, calls time out), and they flow again after `heal`.

The relay reads the set of cut paths from a JSON file on SIGHUP and confirms each
reload by writing the file's version to a second file, so the CLI knows the fault is
in force before it returns.

    python -m havm.faultnet --links LINKS.json --faults FAULTS.json
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import logging
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("havm.faultnet")

CHUNK = 64 * 1024


@dataclass
class Link:
    """One network path: connections to `listen` are relayed to `target`."""

    name: str  # "heartbeat:<host>" or "management:<host>"
    listen: str
    target: str
    open: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.open.set()


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def read_links(path: Path) -> list[Link]:
    raw = json.loads(path.read_text())
    return [Link(name, spec["listen"], spec["target"]) for name, spec in raw.items()]


def write_faults(path: Path, cut: set[str], version: int) -> None:
    """Record the paths to cut (used by the CLI; the relay applies them on SIGHUP)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"version": version, "cut": sorted(cut)}) + "\n")
    os.replace(tmp, path)


def read_faults(path: Path) -> tuple[set[str], int]:
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return set(), 0
    return set(raw.get("cut", ())), int(raw.get("version", 0))


def applied_path(faults: Path) -> Path:
    return faults.with_name(faults.stem + ".applied")


async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: Link) -> None:
    """Copy bytes one way while the link is open; hold them while it is cut."""
    try:
        while True:
            await link.open.wait()
            data = await reader.read(CHUNK)
            if not data:
                break
            # Bytes read just before a cut are held until the link heals, as a
            # partitioned network holds them in retransmission.
            await link.open.wait()
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def relay(link: Link, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
    # A connection opened during a cut waits, like a SYN that gets no answer.
    await link.open.wait()
    try:
        upstream_reader, upstream_writer = await asyncio.open_connection(*split_address(link.target))
    except OSError:
        client_writer.close()
        return
    try:
        await asyncio.gather(
            pump(client_reader, upstream_writer, link),
            pump(upstream_reader, client_writer, link),
        )
    except asyncio.CancelledError:  # the relay is stopping: drop the connection quietly
        client_writer.close()
        upstream_writer.close()


def apply_faults(links: list[Link], cut: set[str]) -> None:
    for link in links:
        if link.name in cut and link.open.is_set():
            link.open.clear()
            log.info("cut %s", link.name)
        elif link.name not in cut and not link.open.is_set():
            link.open.set()
            log.info("healed %s", link.name)


async def serve(links_file: Path, faults_file: Path) -> None:
    links = read_links(links_file)
    servers = []
    for link in links:
        host, port = split_address(link.listen)
        servers.append(await asyncio.start_server(functools.partial(relay, link), host, port))

    def reload() -> None:
        cut, version = read_faults(faults_file)
        unknown = cut - {link.name for link in links}
        if unknown:
            log.warning("unknown paths ignored: %s", ", ".join(sorted(unknown)))
        apply_faults(links, cut)
        applied_path(faults_file).write_text(f"{version}\n")

    reload()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGHUP, reload)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("relaying %d paths", len(links))
    await stop.wait()
    for server in servers:
        server.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="havm-faultnet", description=__doc__.splitlines()[0])
    parser.add_argument("--links", type=Path, required=True, help="JSON: name -> {listen, target}")
    parser.add_argument("--faults", type=Path, required=True, help="JSON: the paths to cut")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        asyncio.run(serve(args.links, args.faults))
    except (OSError, ValueError, KeyError) as exc:
        print(f"havm-faultnet: error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()

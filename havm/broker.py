"""The embedded MQTT 3.1.1 broker of a local cluster: amqtt in a process of its own.

`havm up` runs it as `python -m havm.broker --listen 127.0.0.1:PORT` so that the
heartbeat path is a real network service that can be crashed and restarted on its own,
exactly like the mosquitto broker a containerized cluster uses instead.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
import sys


def _parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"must be HOST:PORT, got {value!r}")
    return host, int(port)


def broker_config(host: str, port: int) -> dict[str, object]:
    """amqtt configuration: one plain TCP listener, anonymous clients, no $SYS noise."""
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
        "plugins": {
            "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
        },
    }


class BrokerStartError(Exception):
    """The broker could not start listening."""


def check_listen(host: str, port: int) -> None:
    """Fail with one sentence before amqtt would log a traceback for the same problem."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise BrokerStartError(f"unknown address {host}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise BrokerStartError(exc.strerror or str(exc)) from None


async def serve(host: str, port: int) -> None:
    check_listen(host, port)
    from amqtt.broker import Broker  # heavy import: only once the address is usable
    from amqtt.errors import BrokerError

    broker = Broker(broker_config(host, port))
    try:
        await broker.start()
    except (BrokerError, OSError) as exc:
        raise BrokerStartError(str(exc.__cause__ or exc)) from None
    logging.getLogger("havm.broker").info("MQTT broker listening on %s:%d", host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await broker.shutdown()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="havm-broker", description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=_parse_listen, required=True, metavar="HOST:PORT")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # amqtt logs every connection and packet at INFO; keep the log about the broker.
    for noisy in ("amqtt", "transitions"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        asyncio.run(serve(*args.listen))
    except (BrokerStartError, OSError) as exc:
        print(f"havm-broker: cannot listen on {args.listen[0]}:{args.listen[1]}: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()

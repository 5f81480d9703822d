"""The embedded MQTT 3.1.1 broker of a local cluster: amqtt in a process of its own.

`havm up` runs it as `python -m havm.broker --listen 127.0.0.1:PORT --secret-file F`
so that the heartbeat path is a real network service that can be crashed and
restarted on its own, exactly like the mosquitto broker a containerized cluster uses
instead. With the cluster's secret file it admits only the cluster's users, each to its
own topics (havm.contract.broker_access); without one, anyone, to anything.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
import sys
from pathlib import Path


def _parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"must be HOST:PORT, got {value!r}")
    return host, int(port)


def broker_config(host: str, port: int, secret_file: str | None = None) -> dict[str, object]:
    """amqtt configuration: one plain TCP listener, no $SYS noise; the cluster's users
    and their topics with a secret file, anonymous clients without."""
    plugins: dict[str, object] = (
        {
            "havm.broker_plugins.ClusterUsers": {"secret_file": secret_file},
            "havm.broker_plugins.ClusterTopics": {},
        }
        if secret_file
        else {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}
    )
    return {"listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}}, "plugins": plugins}


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


async def serve(host: str, port: int, secret_file: str | None = None) -> None:
    check_listen(host, port)
    from amqtt.broker import Broker  # heavy import: only once the address is usable
    from amqtt.errors import BrokerError

    broker = Broker(broker_config(host, port, secret_file))
    try:
        await broker.start()
    except (BrokerError, OSError) as exc:
        raise BrokerStartError(str(exc.__cause__ or exc)) from None
    logging.getLogger("havm.broker").info(
        "MQTT broker listening on %s:%d (%s)",
        host,
        port,
        "the cluster's users only" if secret_file else "INSECURE: anyone may publish anything",
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await broker.shutdown()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="havm-broker", description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=_parse_listen, required=True, metavar="HOST:PORT")
    parser.add_argument(
        "--secret-file",
        help="the cluster's secret file: only its users, each to its own topics (default: anyone)",
    )
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
    if args.secret_file is not None:
        from havm.contract.heartbeat_auth import SecretFileError, read_secret_file

        try:
            read_secret_file(Path(args.secret_file))
        except SecretFileError as exc:
            print(f"havm-broker: --secret-file: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
    try:
        host, port = args.listen
        asyncio.run(serve(host, port, args.secret_file))
    except (BrokerStartError, OSError) as exc:
        print(f"havm-broker: cannot listen on {args.listen[0]}:{args.listen[1]}: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()

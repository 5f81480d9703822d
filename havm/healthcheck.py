"""Is a component serving? The one probe `havm up`, the container image's HEALTHCHECK
and the compose tooling share.

    havm-healthcheck [HOST:PORT]          gRPC health (the manager, an agent)
    havm-healthcheck --tcp HOST:PORT      a TCP listener (the broker)
    havm-healthcheck --identity FILE --peer NAME HOST:PORT
                                          gRPC health over mutual TLS, as the holder
                                          of FILE, of the server whose certificate
                                          names NAME (`manager`, or a host's name)

The address defaults to `HAVM_HEALTH_ADDRESS`, else 127.0.0.1:50051. Exits 0 when
serving, 1 when not (one line on stderr says why), 2 on a bad argument: what a
container runtime's health check expects.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from havm.contract.identity import IdentityFile

DEFAULT_ADDRESS = "127.0.0.1:50051"
EXIT_UNHEALTHY = 1
EXIT_USAGE = 2


def tcp_ready(address: str, timeout: float = 0.2) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except OSError:
        return False


def grpc_serving(
    address: str, timeout: float = 0.5, identity: IdentityFile | None = None, peer: str = ""
) -> bool:
    """True when the gRPC health service at `address` answers SERVING for the server;
    with `identity`, over mutual TLS to the server named `peer`."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from havm.contract.identity import sync_channel

    try:
        with sync_channel(address, identity, peer) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout
            )
    except grpc.RpcError:
        return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def _valid_address(value: str) -> bool:
    host, sep, port = value.rpartition(":")
    return bool(sep and host and port.isdigit() and 0 < int(port) < 65536)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="havm-healthcheck", description=__doc__.split("\n\n")[0])
    parser.add_argument("address", nargs="?", default=None, help="HOST:PORT (default $HAVM_HEALTH_ADDRESS)")
    parser.add_argument("--tcp", action="store_true", help="only check that the port accepts connections")
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for the answer")
    parser.add_argument("--identity", type=Path, help="an identity file: ask over mutual TLS")
    parser.add_argument("--peer", default="", help="with --identity: the name the server's certificate holds")
    args = parser.parse_args(argv)
    address = args.address or os.environ.get("HAVM_HEALTH_ADDRESS") or DEFAULT_ADDRESS
    if not _valid_address(address):
        print(f"havm-healthcheck: address must be HOST:PORT, got {address!r}", file=sys.stderr)
        return EXIT_USAGE
    identity = None
    if args.identity is not None:
        from havm.contract.identity import IdentityError, read_identity_file

        if not args.peer:
            print("havm-healthcheck: --identity needs --peer NAME", file=sys.stderr)
            return EXIT_USAGE
        try:
            identity = read_identity_file(args.identity)
        except IdentityError as exc:
            print(f"havm-healthcheck: --identity: {exc}", file=sys.stderr)
            return EXIT_USAGE
    if args.tcp:
        healthy = tcp_ready(address, args.timeout)
        what = "accepts no connection"
    else:
        healthy = grpc_serving(address, args.timeout, identity, args.peer)
        what = "is not SERVING on gRPC health"
    if not healthy:
        print(f"havm-healthcheck: {address} {what}", file=sys.stderr)
        return EXIT_UNHEALTHY
    return 0


if __name__ == "__main__":
    sys.exit(main())

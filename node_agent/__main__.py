"""`python -m node_agent` / `havm-agent`: parse arguments, load the host, run it.

Bad arguments and bad configuration files end here with one line on stderr and exit
code 2, so that `havm up` can show the problem as it is.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
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
    parser.add_argument("--config", required=True, type=Path, help="host configuration JSON")
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


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        _address(args.listen, "--listen")
        broker = _address(args.broker, "--broker") if args.broker else None
        config = _load_config(args.config)
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
    options = AgentOptions(
        config=config, state_dir=args.state_dir.resolve(), listen=args.listen, broker=broker
    )
    return asyncio.run(run_agent(options))


if __name__ == "__main__":
    sys.exit(main())

"""mosquitto as a local cluster's broker (`havm up --mqtt-broker mosquitto`).

The same broker the containers run, with the same rules as the embedded one: the
cluster's users only, each to its own topics. `havm up` writes its configuration, its
password file and its ACL file into the state directory (`broker/`, the owner's only)
from havm.contract.broker_access; `havm host add` writes them again for the new host
and has mosquitto read them again (SIGHUP), as its documentation prescribes.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
from collections.abc import Iterable
from pathlib import Path

from havm.cli.private_files import private_dir, write_private
from havm.contract.broker_access import mosquitto_files

BROKER_DIR = "broker"
CONFIG_FILE = "mosquitto.conf"


class MosquittoMissing(Exception):
    """mosquitto is not installed; the message says how to install it."""


def mosquitto_binary() -> str:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        raise MosquittoMissing(
            "--mqtt-broker mosquitto: mosquitto is not installed (apt-get install mosquitto)"
        )
    return binary


def is_mosquitto(argv: list[str]) -> bool:
    return bool(argv) and Path(argv[0]).name == "mosquitto"


def write_mosquitto_files(state_dir: Path, listen: str, secret: bytes | None, hosts: Iterable[str]) -> Path:
    """The broker's configuration (and, with the cluster secret, its users and ACL);
    returns the configuration file."""
    directory = private_dir(state_dir / BROKER_DIR)
    address, _, port = listen.rpartition(":")
    lines = [
        "# Written by `havm up`: the local cluster's broker.",
        f"listener {port} {address}",
        "persistence false",
        "log_dest stderr",
        "log_type error",
        "log_type warning",
        "log_type notice",
        # mosquitto started as root would switch to its own user, who cannot read these files.
        f"user {pwd.getpwuid(os.getuid()).pw_name}",
    ]
    if secret is None:
        lines.append("allow_anonymous true")
    else:
        passwords, acl = mosquitto_files(secret, hosts)
        write_private(directory / "passwords", passwords)
        write_private(directory / "acl", acl)
        lines += [
            "allow_anonymous false",
            f"password_file {directory / 'passwords'}",
            f"acl_file {directory / 'acl'}",
        ]
    config = directory / CONFIG_FILE
    write_private(config, "\n".join(lines) + "\n")
    return config


def mosquitto_argv(config: Path) -> list[str]:
    return [mosquitto_binary(), "-c", str(config)]


def reload(pid: int) -> None:
    """Have a running mosquitto read its password and ACL files again."""
    if pid > 0:
        try:
            os.kill(pid, signal.SIGHUP)
        except ProcessLookupError:
            pass

"""The secrets of a local cluster, kept in its state directory where only its owner
can read them (directory 0700, files 0600).

The heartbeat secret: the manager checks every heartbeat and status against a key
derived from it and the host's name (havm.contract.heartbeat_auth); each agent gets
its own derived key in its configuration, never the secret itself.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from havm.cli.private_files import private_dir, write_private
from havm.contract.heartbeat_auth import SECRET_BYTES, parse_secret

SECRETS_DIR = "secrets"
HEARTBEAT_SECRET_FILE = "heartbeat-secret"


def heartbeat_secret(state_dir: Path) -> tuple[Path, bytes]:
    """The cluster's heartbeat secret and its file, made on first use."""
    path = private_dir(state_dir / SECRETS_DIR) / HEARTBEAT_SECRET_FILE
    try:
        kept = parse_secret(path.read_text())
    except FileNotFoundError:
        kept = None
    if kept is not None:
        return path, kept
    secret = secrets.token_bytes(SECRET_BYTES)
    write_private(path, secret.hex() + "\n")
    return path, secret

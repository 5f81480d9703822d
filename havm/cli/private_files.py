"""Files only the cluster's owner may read: its secrets, its CA and identities, its
broker's passwords. Written whole (a temporary file renamed over the old one) and
created 0600, so that no other user ever sees them, not even half-written.
"""

from __future__ import annotations

import os
from pathlib import Path


def private_dir(path: Path) -> Path:
    """The directory, made 0700 (and made so if it existed)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def write_private(path: Path, data: bytes | str) -> None:
    """Replace `path` with `data`, readable by its owner only."""
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data.encode() if isinstance(data, str) else data)
    os.replace(temporary, path)

"""Shared fixtures of the manager tests.

The repository root goes first on sys.path so that `manager` is this tree's package
(and not the `tests/manager` folder, which Python would otherwise take for a
namespace package of the same name).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
)

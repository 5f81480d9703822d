"""The agent's core stays pure: no clock, no files, no threads, no hidden randomness.

import-linter guards the package boundaries; this reads the core's own imports so a
stray `import time` is caught even where the lint configuration lags behind.
"""

from __future__ import annotations

import ast
from pathlib import Path

import node_agent.core

IMPURE = {"time", "os", "pathlib", "threading", "random", "sys", "asyncio", "socket", "subprocess"}


def _imported_top_levels(source: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text(), str(source))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_core_modules_import_nothing_impure() -> None:
    core_dir = Path(node_agent.core.__file__).parent
    modules = sorted(core_dir.glob("*.py"))
    assert len(modules) > 5
    found = {m.name: _imported_top_levels(m) & IMPURE for m in modules}
    assert {name: bad for name, bad in found.items() if bad} == {}

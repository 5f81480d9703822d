"""The wire contract and the architecture rules hold: stubs are fresh, buf lint is
clean, and the import-linter contracts of pyproject.toml are kept."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))
import gen_protos  # noqa: E402

# A patch release of grpcio-tools stamps its own version into the *_grpc.py stubs and
# changes nothing else; the stubs keep the lowest version of the pinned series, which
# every grpcio the range allows can import.
_GENERATED_VERSION = re.compile(r"^GRPC_GENERATED_VERSION = '1\.85\.\d+'$", re.MULTILINE)


def _stub_text(path: Path) -> str:
    return _GENERATED_VERSION.sub("GRPC_GENERATED_VERSION = '1.85.x'", path.read_text())


def test_generated_stubs_match_the_protos(tmp_path: Path) -> None:
    generated = gen_protos.generate(tmp_path)
    assert generated, "protoc produced nothing"
    stale = []
    for path in generated:
        rel = path.relative_to(tmp_path)
        committed = REPO / rel
        if not committed.exists() or _stub_text(path) != _stub_text(committed):
            stale.append(str(rel))
    committed_stubs = {p.relative_to(REPO) for p in (REPO / "havm" / "v1").glob("*_pb2*.py*")}
    extra = committed_stubs - {p.relative_to(tmp_path) for p in generated}
    assert not stale and not extra, (
        f"stubs are stale: {stale or sorted(map(str, extra))}; run `python tools/gen_protos.py`"
    )


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed: install the dev extras (pip install -e '.[dev]')")
    return found


def test_buf_lint_is_clean() -> None:
    result = subprocess.run([_tool("buf"), "lint"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_contracts_are_kept() -> None:
    result = subprocess.run([_tool("lint-imports"), "--no-cache"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_lint_and_format_are_clean() -> None:
    ruff = _tool("ruff")
    lint = subprocess.run([ruff, "check", "."], cwd=REPO, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = subprocess.run([ruff, "format", "--check", "."], cwd=REPO, capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


CONTRACT_MODULES = [
    f"havm/contract/{name}.py"
    for name in ("__init__", "fields", "hosts", "timing", "topology", "topology_file")
]


def test_the_pure_cores_type_check_strictly() -> None:
    """Both `core/` packages and the topology schema pass `mypy --strict`: their Protocols
    and dataclasses are the contracts the apps are written against."""
    result = subprocess.run(
        # havm.contract's modules but host_config, which speaks the generated stubs as the
        # adapters do.
        [_tool("mypy"), "--strict", "manager/core", "node_agent/core", *CONTRACT_MODULES],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rest_of_the_code_type_checks() -> None:
    """Everything else (apps, adapters, CLI, scenario engine) passes mypy's default mode:
    an adapter that no longer fits the Protocol it is handed to fails here, not at run time."""
    result = subprocess.run(
        [_tool("mypy"), "manager", "node_agent", "havm"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr

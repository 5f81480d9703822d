"""Regenerate the Python stubs of the wire contract from protos/ into havm/v1/.

The stubs are committed so that a plain `pip install` works without grpcio-tools at
run time; tests/test_stubs.py fails when they no longer match the .proto sources.

    python tools/gen_protos.py            # rewrite havm/v1/*_pb2*.py(i)
    python tools/gen_protos.py OUT_DIR    # write them under OUT_DIR instead
"""

from __future__ import annotations

import sys
from pathlib import Path

from grpc_tools import protoc

REPO = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO / "protos"


def generate(out_dir: Path) -> list[Path]:
    """Run protoc on every .proto under protos/; return the files it wrote."""
    sources = sorted(PROTO_ROOT.rglob("*.proto"))
    include = Path(protoc.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *(str(s.relative_to(PROTO_ROOT)) for s in sources),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return sorted(p for p in out_dir.rglob("*_pb2*.py*"))


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO
    for path in generate(target):
        print(path.relative_to(target))

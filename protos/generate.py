"""Regenerate the committed gRPC stubs from protos/synesthesia/v1/*.proto.

python protos/generate.py            # writes shared/synesthesia/v1/*_pb2*.py(i)
python protos/generate.py OUT_DIR    # writes OUT_DIR/synesthesia/v1/... (used by the stale test)
"""

from __future__ import annotations

import sys
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parent
DEFAULT_OUT = PROTO_ROOT.parent / "shared"


def generate(out_root: Path = DEFAULT_OUT) -> list[Path]:
    import grpc_tools
    from grpc_tools import protoc  # only needed by developers, never at run time

    protos = sorted(
        str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / "synesthesia" / "v1").glob("*.proto")
    )
    include = Path(grpc_tools.__file__).parent / "_proto"
    (out_root / "synesthesia" / "v1").mkdir(parents=True, exist_ok=True)
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *protos,
    ]
    rc = protoc.main(args)
    if rc != 0:
        raise RuntimeError(f"protoc failed with exit code {rc}")
    return sorted((out_root / "synesthesia" / "v1").glob("*_pb2*"))


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT
    for path in generate(out):
        print(path)

"""The gRPC API's .proto files, shipped in the wheel as ``synesthesia.protos`` so that clients in
other languages (and buf, as a module: ``buf.yaml`` is beside them) can generate their own stubs
from the installed package:

    python -c "import synesthesia.protos as p; print(p.root())"
    buf generate "$(python -c 'import synesthesia.protos as p; print(p.root())')"
"""

from __future__ import annotations

from pathlib import Path


def root() -> Path:
    """The folder holding ``buf.yaml`` and ``synesthesia/v1/*.proto`` (the import root)."""
    return Path(__file__).resolve().parent


def files() -> list[Path]:
    return sorted((root() / "synesthesia" / "v1").glob("*.proto"))

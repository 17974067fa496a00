"""The committed stubs must equal what protos/generate.py produces from the .proto files."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_generated_stubs_are_not_stale(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("generate", REPO / "protos" / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fresh = {p.name: p.read_bytes() for p in module.generate(tmp_path)}
    committed_dir = REPO / "shared" / "synesthesia" / "v1"
    committed = {p.name: p.read_bytes() for p in committed_dir.glob("*_pb2*")}
    assert fresh, "protoc produced nothing"
    assert sorted(fresh) == sorted(committed), "stub files differ; run: python protos/generate.py"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"stale stubs {stale}; run: python protos/generate.py"

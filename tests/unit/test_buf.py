"""The protos pass `buf lint` (STANDARD + COMMENTS), are `buf format`ted, and make no breaking
change against the committed baseline image protos/baseline.binpb (see protos/README.md).

buf comes from npm (@bufbuild/buf, the version pinned in scripts/bootstrap.sh) into .tools/.
Without it these tests skip, except under CI=true, where a missing buf is a failure."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROTOS = REPO / "protos"
BASELINE = PROTOS / "baseline.binpb"
BUF = REPO / ".tools" / "node_modules" / ".bin" / "buf"


@pytest.fixture(scope="module")
def buf() -> Path:
    if BUF.is_file() and os.access(BUF, os.X_OK):
        return BUF
    message = f"buf is not installed at {BUF}; run scripts/bootstrap.sh"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def run_buf(buf: Path, *args: str, cwd: Path = PROTOS) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(buf), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def test_lint(buf: Path) -> None:
    result = run_buf(buf, "lint")
    assert result.returncode == 0, result.stdout + result.stderr


def test_format(buf: Path) -> None:
    result = run_buf(buf, "format", "--diff", "--exit-code")
    assert result.returncode == 0, "run: .tools/node_modules/.bin/buf format -w protos\n" + (
        result.stdout + result.stderr
    )


def test_no_breaking_change_against_baseline(buf: Path) -> None:
    assert BASELINE.is_file(), f"{BASELINE} is missing (see protos/README.md)"
    result = run_buf(buf, "breaking", "--against", str(BASELINE))
    assert result.returncode == 0, result.stdout + result.stderr


# Each edit turns today's search.proto into one that breaks the wire or generated code.
BREAKS = {
    "field deleted": (
        "  // The sequence number of the last write.\n  uint64 last_seq = 2;\n}\n\n"
        "// One chunk of a bulk upsert stream (",
        "}\n\n// One chunk of a bulk upsert stream (",
        'field "2" with name "last_seq" on message "UpsertResponse"',
    ),
    "field renumbered": ("  int32 k = 7;\n", "  int32 k = 17;\n", '"k" on message "QueryRequest"'),
    "rpc request type changed": (
        "rpc UpsertStream(stream UpsertStreamRequest)",
        "rpc UpsertStream(stream UpsertRequest)",
        'changed request type from "synesthesia.v1.UpsertStreamRequest"',
    ),
}


@pytest.mark.parametrize("name", sorted(BREAKS))
def test_breaking_check_catches_a_break(buf: Path, tmp_path: Path, name: str) -> None:
    old, new, expected = BREAKS[name]
    copy = tmp_path / "protos"
    shutil.copytree(PROTOS, copy, ignore=shutil.ignore_patterns("__pycache__"))
    search = copy / "synesthesia" / "v1" / "search.proto"
    text = search.read_text()
    assert text.count(old) == 1, f"the {name!r} edit no longer applies; update BREAKS"
    search.write_text(text.replace(old, new))
    result = run_buf(buf, "breaking", "--against", str(BASELINE), cwd=copy)
    output = result.stdout + result.stderr
    assert result.returncode != 0, f"buf breaking missed: {name}\n{output}"
    assert expected in output, output

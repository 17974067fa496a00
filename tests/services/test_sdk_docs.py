"""docs/sdk.md is executable: every ```python block runs, in order and in one namespace, against
a real stack on loopback (the tiny ``imagebind-test`` model), and a plain ``` block right after
one is the output it must print."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest
from synesthesia.modality import Modality

from tests.conftest import REPO
from tests.e2e.tux import search_stack

DOC = REPO / "docs" / "sdk.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.S | re.M)


def blocks(text: str) -> list[tuple[str, str, str | None]]:
    """(first line, code, expected output or None) of every python block."""
    found = [(m.group(1), m.group(2)) for m in FENCE.finditer(text)]
    out = []
    for i, (lang, body) in enumerate(found):
        if lang == "python":
            nxt = found[i + 1] if i + 1 < len(found) else None
            expected = nxt[1] if nxt is not None and nxt[0] == "" else None
            out.append((body.splitlines()[0], body, expected))
    return out


def test_every_python_block_of_the_sdk_guide_runs(tmp_path: Path) -> None:
    examples = blocks(DOC.read_text())
    assert len(examples) >= 8
    encoders: dict[Modality, str] = {}
    with search_stack(tmp_path / "index", model="imagebind-test", encoders=encoders) as target:
        namespace = {
            "SEARCH": target,
            "TEXT_ENCODER": encoders[Modality.TEXT],
            "IMAGE_ENCODER": encoders[Modality.IMAGE],
            "AUDIO_ENCODER": encoders[Modality.AUDIO],
        }
        for first, code, expected in examples:
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                exec(compile(code, f"docs/sdk.md: {first}", "exec"), namespace)
            if expected is not None:
                assert printed.getvalue().strip() == expected.strip(), first
            elif printed.getvalue():
                pytest.fail(f"block {first!r} prints but the guide shows no output")

"""kill -9 of a search server during a streaming upsert loses nothing that was acknowledged."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.services import crash_harness


@pytest.mark.slow
def test_sigkill_during_streaming_upsert_loses_nothing_acknowledged(tmp_path: Path) -> None:
    report = crash_harness.run(tmp_path / "data", kills=5, seed=1234)
    assert report.kills == 5
    assert report.acknowledged > 100, "too few acknowledgements to mean anything"
    assert not report.lost, f"lost {len(report.lost)} acknowledged ids, e.g. {report.lost[:5]}"
    assert not report.mismatched, report.mismatched[:5]
    # every acknowledged id is checked after every restart that follows it
    assert report.verified >= report.acknowledged

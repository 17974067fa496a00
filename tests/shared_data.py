"""The material beside the repository (../shared): a test that needs it fails in CI
(``CI=true``) when it is missing, and is skipped elsewhere, naming what is missing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def require(path: Path, what: str) -> Path:
    """``path`` if it exists; otherwise fail (CI) or skip with ``what`` in the message."""
    if not path.exists():
        msg = f"{what} not found at {path}"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return path

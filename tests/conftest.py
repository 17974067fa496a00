"""Shared fixtures: where ../shared is, and real servers on loopback."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """The team's material beside the repository (data, golden files)."""
    return Path(os.environ.get("SYNESTHESIA_SHARED", REPO.parent / "shared"))


def sigint_as_in_a_terminal() -> None:
    """``preexec_fn`` of a child that a test stops with SIGINT as Ctrl-C would: the default
    action, as a terminal's foreground process has it. A test run started in the background
    (``cmd &`` in a script) ignores SIGINT, every child inherits that, and a Python child then
    never raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def require(path: Path) -> Path:
    """Return ``path``; when it is missing, fail in CI (CI=true) and skip elsewhere."""
    if not path.exists():
        message = f"test data missing: {path} (set SYNESTHESIA_SHARED)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return require(shared_dir() / "data")


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    return require(shared_dir() / "golden")

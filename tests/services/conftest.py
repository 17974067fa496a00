"""Fixtures for service tests: the three encoders, each a real server on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from synesthesia.modality import Modality
from synesthesia.services.encoder.app import start_encoder
from synesthesia.services.encoder.config import load_embedder
from synesthesia.services.encoder.settings import EncoderSettings

from tests.servers import running


def start_encoders(
    stack: ExitStack, ports: dict[Modality, int] | None = None, model: str = "synesthesia-minilm"
) -> dict[Modality, str]:
    """``model="imagebind-test"`` is the tiny random-init model (32-d; loads in a second)."""
    targets = {}
    for m in Modality:
        settings = EncoderSettings(modality=m, port=(ports or {}).get(m, 0), model=model)
        server, _ = stack.enter_context(
            running(lambda s=settings: start_encoder(s, load_embedder(s, s.modality)))
        )
        targets[m] = f"127.0.0.1:{server.port}"
    return targets


@pytest.fixture(scope="session")
def encoder_targets() -> Iterator[dict[Modality, str]]:
    with ExitStack() as stack:
        yield start_encoders(stack)

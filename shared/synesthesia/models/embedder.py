"""The Embedder contract shared by the gRPC servicers, the Ray deployments and the CLI.

Embedding is split in two stages so that a server can micro-batch across requests without one
caller's bad file failing another caller's batch:

* ``prepare(modality, item)`` decodes and preprocesses ONE item (CPU, per request). Bad input
  raises ``InvalidInput`` naming the item; nothing of the model is touched.
* ``encode(modality, prepared)`` runs ONE forward pass of the model over any number of prepared
  items (possibly from many requests) and returns unit-norm float32 vectors.

``embed`` is the convenience composition of both.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from synesthesia.errors import InvalidInput, item_error
from synesthesia.modality import Modality


@dataclass(frozen=True)
class ModelInfo:
    model_id: str
    dim: int
    modalities: tuple[Modality, ...]
    max_text_tokens: int = 0
    max_audio_seconds: float = 0.0
    max_image_pixels: int = 0


@dataclass
class Prepared:
    """One decoded, preprocessed item. ``inputs`` is family-specific (tensors the family's
    ``encode`` knows how to collate); the other fields are reported back to the caller."""

    inputs: dict[str, Any]
    truncated: bool = False
    windows: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


class Embedder(ABC):
    """A model that turns items of its modalities into unit vectors of one space."""

    def __init__(self) -> None:
        self._calls_lock = threading.Lock()
        self.forward_calls = 0  # forward passes of the model (one per encode); tests count these

    @abstractmethod
    def info(self) -> ModelInfo: ...

    @abstractmethod
    def _prepare(self, modality: Modality, item: Any) -> Prepared:
        """Decode + preprocess one item; raise InvalidInput(problem) on bad input."""

    @abstractmethod
    def _encode(self, modality: Modality, prepared: Sequence[Prepared]) -> np.ndarray:
        """One forward pass over ``prepared``; returns float32 [n, dim], unit-norm rows."""

    @property
    def modalities(self) -> tuple[Modality, ...]:
        return self.info().modalities

    def check_modality(self, modality: Modality | str) -> Modality:
        m = Modality.parse(modality)
        if m not in self.modalities:
            served = ", ".join(x.value for x in self.modalities)
            raise InvalidInput(
                f"modality {m.value!r} is not served here (this model serves {served})"
            )
        return m

    def prepare(
        self, modality: Modality | str, item: Any, index: int = 0, item_id: str = ""
    ) -> Prepared:
        m = self.check_modality(modality)
        try:
            return self._prepare(m, item)
        except InvalidInput as exc:
            raise item_error(index, item_id, str(exc)) from None

    def encode(self, modality: Modality | str, prepared: Sequence[Prepared]) -> np.ndarray:
        m = self.check_modality(modality)
        if not prepared:
            return np.zeros((0, self.info().dim), dtype=np.float32)
        with self._calls_lock:
            self.forward_calls += 1
        out = self._encode(m, prepared)
        return np.ascontiguousarray(out, dtype=np.float32)

    def embed(self, modality: Modality | str, items: Sequence[Any]) -> np.ndarray:
        prepared = [self.prepare(modality, item, i) for i, item in enumerate(items)]
        return self.encode(modality, prepared)


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norms, eps)).astype(np.float32)

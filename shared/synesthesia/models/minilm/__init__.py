"""The default family: modality tokenisers feeding the shared all-MiniLM-L6-v2 backbone."""

from __future__ import annotations

from typing import Any

from synesthesia.models.minilm.config import AudioCfg, ImageCfg, MiniLMConfig, TextCfg
from synesthesia.models.minilm.embedder import MODEL_NAME, MiniLMEmbedder
from synesthesia.models.registry import register_model


@register_model(MODEL_NAME)
def synesthesia_minilm(**kwargs: Any) -> MiniLMEmbedder:
    """Text = all-MiniLM-L6-v2 sentence embeddings; images and sounds bound to that space by
    the shipped tower weights (``checkpoint=`` overrides the file); ``device=`` and
    ``precision=`` as in ``synesthesia.models.device``."""
    checkpoint = kwargs.pop("checkpoint", None)
    return MiniLMEmbedder(weights=checkpoint, **kwargs)


__all__ = ["AudioCfg", "ImageCfg", "MiniLMConfig", "MiniLMEmbedder", "TextCfg"]

"""The ``synesthesia-minilm`` network: modality tokenisers -> the shared, frozen
all-MiniLM-L6-v2 Transformer -> mean pooling -> per-modality head -> unit vectors.

Text takes exactly sentence-transformers' path (word embeddings, backbone, mean pooling,
normalisation) and has no head, so text vectors ARE all-MiniLM-L6-v2 sentence embeddings.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from synesthesia.models.minilm.bert import BertBackbone, BertConfig, masked_mean
from synesthesia.models.minilm.config import MiniLMConfig
from synesthesia.models.minilm.stems import AudioStem, ImageStem


class ModalityHead(nn.Module):
    """Projection of the pooled vector; initialised to the identity."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, dim)
        nn.init.eye_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class ImageTower(nn.Module):
    def __init__(self, cfg: MiniLMConfig) -> None:
        super().__init__()
        self.stem = ImageStem(cfg.image, cfg.dim)
        self.head = ModalityHead(cfg.dim)


class AudioTower(nn.Module):
    def __init__(self, cfg: MiniLMConfig) -> None:
        super().__init__()
        self.stem = AudioStem(cfg.audio, cfg.dim)
        self.head = ModalityHead(cfg.dim)


class SynesthesiaMiniLM(nn.Module):
    """Parameters are grouped by modality (``image.*``, ``audio.*``) so that each service loads
    only its own slice; ``backbone.*`` comes from the all-MiniLM-L6-v2 package files."""

    def __init__(self, cfg: MiniLMConfig, bert: BertConfig, modalities: tuple[str, ...]) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = BertBackbone(bert)
        self.image = ImageTower(cfg) if "image" in modalities else None
        self.audio = AudioTower(cfg) if "audio" in modalities else None

    def _through_backbone(
        self, tokens: torch.Tensor, valid: torch.Tensor, use: bool
    ) -> torch.Tensor:
        if use:
            return masked_mean(self.backbone(tokens, valid), valid)
        return masked_mean(tokens, valid)

    def encode_text(self, input_ids: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        hidden = self.backbone(self.backbone.embed_ids(input_ids), valid)
        return F.normalize(masked_mean(hidden, valid), dim=-1)

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        assert self.image is not None, "image weights not loaded"
        tokens, valid = self.image.stem(pixels)
        pooled = self._through_backbone(tokens, valid, self.cfg.image.use_backbone)
        return F.normalize(self.image.head(pooled), dim=-1)

    def encode_audio(self, fbank: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """One vector per window [W, dim] (callers average windows of one clip)."""
        assert self.audio is not None, "audio weights not loaded"
        tokens, valid = self.audio.stem(fbank, frames)
        pooled = self._through_backbone(tokens, valid, self.cfg.audio.use_backbone)
        return F.normalize(self.audio.head(pooled), dim=-1)

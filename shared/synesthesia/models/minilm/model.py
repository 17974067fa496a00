"""The ``synesthesia-minilm`` network: modality tokenisers -> the shared, frozen
all-MiniLM-L6-v2 Transformer -> mean pooling -> per-modality head -> unit vectors.

Text takes exactly sentence-transformers' path (word embeddings, backbone, mean pooling,
normalisation) and has no head, so text vectors ARE all-MiniLM-L6-v2 sentence embeddings.
Image and audio towers choose how their tokens use the backbone (``config.TOWER_MODES``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from synesthesia.models.minilm.bert import BertBackbone, BertConfig, masked_mean
from synesthesia.models.minilm.config import TOWER_MODES, AudioCfg, ImageCfg, MiniLMConfig
from synesthesia.models.minilm.preprocess import busiest_excerpts
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


class TextAnchors(nn.Module):
    """Re-expresses a unit vector through a fixed bank of text vectors (``config`` explains):
    a softmax over the bank at temperature ``tau`` picks the words the vector is nearest,
    their mean direction is blended back with the vector by ``blend``."""

    vectors: torch.Tensor

    def __init__(self, dim: int, count: int, tau: float, blend: float) -> None:
        super().__init__()
        if count < 1 or tau <= 0 or not 0.0 <= blend <= 1.0:
            raise ValueError(f"text anchors need count >= 1, tau > 0, 0 <= blend <= 1 "
                             f"(got {count}, {tau}, {blend})")  # fmt: skip
        self.tau, self.blend = tau, blend
        self.register_buffer("vectors", torch.zeros(count, dim))
        self.texts: list[str] = []  # the words behind ``vectors`` (weights file metadata)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(z @ self.vectors.T / self.tau, dim=-1)
        words = F.normalize(weights @ self.vectors, dim=-1)
        return F.normalize(self.blend * z + (1.0 - self.blend) * words, dim=-1)


class OwnTransformer(nn.Module):
    """A per-modality pre-LN Transformer (the 'separate towers' design)."""

    def __init__(self, dim: int, layers: int, max_tokens: int = 512) -> None:
        super().__init__()
        self.pos = nn.Parameter(torch.zeros(max_tokens, dim))
        layer = nn.TransformerEncoderLayer(
            dim, nhead=6, dim_feedforward=2 * dim, dropout=0.0, activation="gelu",
            batch_first=True, norm_first=True,
        )  # fmt: skip
        self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, tokens: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        x = tokens + self.pos[: tokens.shape[1]]
        pad = None if bool(valid.all()) else ~valid
        return self.norm(self.layers(x, src_key_padding_mask=pad))


class Tower(nn.Module):
    """Stem (tokeniser) + how its tokens are pooled + head."""

    def __init__(self, stem: nn.Module, cfg: ImageCfg | AudioCfg, dim: int) -> None:
        super().__init__()
        mode = cfg.mode
        if mode not in TOWER_MODES:
            raise ValueError(f"unknown tower mode {mode!r}; one of {TOWER_MODES}")
        self.mode = mode
        self.stem = stem
        self.head = ModalityHead(dim)
        if mode == "hybrid":
            self.bypass = ModalityHead(dim)
        if mode == "own":
            self.own = OwnTransformer(dim, cfg.own_layers)
        self.anchors = (
            TextAnchors(dim, cfg.anchors, cfg.anchor_tau, cfg.anchor_blend) if cfg.anchors else None
        )

    def embed(
        self, tokens: torch.Tensor, valid: torch.Tensor, backbone: BertBackbone
    ) -> torch.Tensor:
        """Unit vectors as served: pooled, normalised, through the text anchors if any."""
        z = F.normalize(self.pool(tokens, valid, backbone), dim=-1)
        return z if self.anchors is None else self.anchors(z)

    def pool(
        self, tokens: torch.Tensor, valid: torch.Tensor, backbone: BertBackbone
    ) -> torch.Tensor:
        if self.mode == "stem":
            return self.head(masked_mean(tokens, valid))
        if self.mode == "own":
            return self.head(masked_mean(self.own(tokens, valid), valid))
        pooled = self.head(masked_mean(backbone(tokens, valid), valid))
        if self.mode == "hybrid":
            pooled = pooled + self.bypass(masked_mean(tokens, valid))
        return pooled


class SynesthesiaMiniLM(nn.Module):
    """Parameters are grouped by modality (``image.*``, ``audio.*``) so that each service loads
    only its own slice; ``backbone.*`` comes from the all-MiniLM-L6-v2 package files."""

    def __init__(self, cfg: MiniLMConfig, bert: BertConfig, modalities: tuple[str, ...]) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = BertBackbone(bert)
        self.image = (
            Tower(ImageStem(cfg.image, cfg.dim), cfg.image, cfg.dim)
            if "image" in modalities
            else None
        )
        self.audio = (
            Tower(AudioStem(cfg.audio, cfg.dim), cfg.audio, cfg.dim)
            if "audio" in modalities
            else None
        )

    def encode_text(self, input_ids: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        hidden = self.backbone(self.backbone.embed_ids(input_ids), valid)
        return F.normalize(masked_mean(hidden, valid), dim=-1)

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        assert self.image is not None, "image weights not loaded"
        tokens, valid = self.image.stem(pixels)
        return self.image.embed(tokens, valid, self.backbone)

    def encode_audio(self, fbank: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """One vector per window [W, dim] (callers average windows of one clip); each window is
        averaged with its busiest excerpt's vector where ``busy_view_seconds`` asks for one."""
        cfg = self.cfg.audio
        if cfg.busy_view_seconds <= 0:
            return self._embed_windows(fbank, frames)
        size = max(1, round(cfg.busy_view_seconds * 1000 / cfg.frame_shift_ms))
        busy, kept = busiest_excerpts(fbank, frames, size)
        # two batches: the excerpts are short, and the stem skips padding past a batch's longest
        whole, excerpt = self._embed_windows(fbank, frames), self._embed_windows(busy, kept)
        w = cfg.busy_view_weight
        return F.normalize(w * whole + (1.0 - w) * excerpt, dim=-1)

    def _embed_windows(self, fbank: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        tower = self.audio
        assert tower is not None, "audio weights not loaded"
        tokens, valid = tower.stem(fbank, frames)
        return tower.embed(tokens, valid, self.backbone)

"""ImageBind's module tree for vision, text and audio: preprocessor -> trunk -> head ->
postprocessor, keyed by modality, with the reference's state_dict names.

``ImageBindModel(config, modalities)`` builds only the requested modalities, so an audio
service holds no vision weights. ``model(modality, x)`` returns exactly what the reference's
``model({modality: x})[modality]`` returns (logit scale and clip averaging included); the
Embedder strips the scale.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from synesthesia.models.imagebind.config import BUILT_MODALITIES, ImageBindConfig
from synesthesia.models.imagebind.layers import Trunk


class PatchStem(nn.Module):
    """Patch embedding; ``proj`` is a module or a Sequential, as in the reference's keys
    (``rgbt_stem.proj.1.weight`` for vision, ``rgbt_stem.proj.weight`` for audio)."""

    def __init__(self, proj: nn.Module, norm_layer: nn.Module | None = None) -> None:
        super().__init__()
        self.proj = proj
        if norm_layer is not None:
            self.norm_layer = norm_layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x).flatten(2).transpose(1, 2)  # [B, D, *grid] -> [B, tokens, D]
        norm = getattr(self, "norm_layer", None)
        return norm(x) if norm is not None else x


class RepeatToFrames(nn.Module):
    """A 4-D image becomes a 2-frame video by repeating it (reference ``PadIm2Video``)."""

    def __init__(self, frames: int) -> None:
        super().__init__()
        self.frames = frames

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4:
            x = x.unsqueeze(2)
        if x.shape[2] == 1:
            x = x.expand(-1, -1, self.frames, -1, -1)
        return x


class PosEmbed(nn.Module):
    """Holds ``pos_embed`` so the key is ``pos_embedding_helper.pos_embed``."""

    def __init__(self, tokens: int, dim: int) -> None:
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens, dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)


class PatchPreprocessor(nn.Module):
    """Vision and audio: stem -> prepend CLS -> add position embedding. Inputs must have the
    configured size (the reference would interpolate the position embedding; serving never
    needs that because preprocessing fixes the size)."""

    def __init__(self, stem: PatchStem, tokens: int, dim: int) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.rgbt_stem = stem
        self.pos_embedding_helper = PosEmbed(tokens, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.rgbt_stem(x)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        tokens = torch.cat([cls, tokens], dim=1)
        pos = self.pos_embedding_helper.pos_embed
        if tokens.shape[1] != pos.shape[1]:
            raise ValueError(f"input gives {tokens.shape[1]} tokens; expected {pos.shape[1]}")
        return tokens + pos


class TextPreprocessor(nn.Module):
    """Token + position embedding (no CLS). ``mask`` is the additive causal mask, stored in the
    checkpoint as a buffer (0 on and below the diagonal, -inf above)."""

    def __init__(self, vocab_size: int, context_length: int, dim: int) -> None:
        super().__init__()
        self.pos_embed = nn.Parameter(torch.empty(1, context_length, dim))
        nn.init.normal_(self.pos_embed, std=0.01)
        mask = torch.full((context_length, context_length), float("-inf")).triu_(1)
        self.register_buffer("mask", mask)
        self.token_embedding = nn.Embedding(vocab_size, dim)
        nn.init.normal_(self.token_embedding.weight, std=0.02)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.token_embedding(ids) + self.pos_embed


class SelectToken(nn.Module):
    def __init__(self, index: int = 0) -> None:
        super().__init__()
        self.index = index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.index, ...]


class TextHead(nn.Module):
    """LayerNorm + Linear at the pooled token (``modality_heads.text.proj.{0,1}``)."""

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.proj = nn.Sequential(nn.LayerNorm(dim, eps=1e-6), nn.Linear(dim, out_dim, bias=False))

    def forward(self, x: torch.Tensor, pooled_index: torch.Tensor) -> torch.Tensor:
        return self.proj(x[torch.arange(x.shape[0], device=x.device), pooled_index])


class Normalize(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=-1)  # divides by max(||x||, 1e-12)


class LogitScale(nn.Module):
    """``min(exp(log_logit_scale), max) * x``; a parameter for text, a buffer for audio."""

    def __init__(self, init: float, learnable: bool, max_scale: float) -> None:
        super().__init__()
        value = torch.tensor(math.log(init), dtype=torch.float32)
        if learnable:
            self.log_logit_scale = nn.Parameter(value)
        else:
            self.register_buffer("log_logit_scale", value)
        self.max_scale = max_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clip(self.log_logit_scale.exp(), max=self.max_scale) * x


def _build(
    cfg: ImageBindConfig, modality: str
) -> tuple[nn.Module, nn.Module, nn.Module, nn.Module]:
    tower = cfg.tower(modality)
    d, out = tower.embed_dim, cfg.out_embed_dim
    pre: nn.Module
    post: nn.Module
    if modality == "vision":
        conv = nn.Conv3d(3, d, kernel_size=cfg.kernel_size, stride=cfg.kernel_size, bias=False)
        stem = PatchStem(nn.Sequential(RepeatToFrames(cfg.video_frames), conv))
        pre = PatchPreprocessor(stem, cfg.vision_tokens, d)
        head: nn.Module = nn.Sequential(
            nn.LayerNorm(d, eps=1e-6), SelectToken(0), nn.Linear(d, out, bias=False)
        )
        post = Normalize()
    elif modality == "text":
        pre = TextPreprocessor(cfg.vocab_size, cfg.context_length, d)
        head = TextHead(d, out)
        post = nn.Sequential(
            Normalize(), LogitScale(cfg.text_logit_scale_init, True, cfg.max_logit_scale)
        )
    else:
        k, s = cfg.audio_kernel_size, cfg.audio_stride
        conv2 = nn.Conv2d(1, d, kernel_size=k, stride=s, bias=False)
        pre = PatchPreprocessor(PatchStem(conv2, nn.LayerNorm(d)), cfg.audio_tokens, d)
        head = nn.Sequential(
            nn.LayerNorm(d, eps=1e-6), SelectToken(0), nn.Linear(d, out, bias=False)
        )
        post = nn.Sequential(
            Normalize(), LogitScale(cfg.audio_logit_scale, False, cfg.max_logit_scale)
        )
    trunk = Trunk(
        d,
        tower.num_blocks,
        tower.num_heads,
        pre_norm=modality == "vision",
        add_bias_kv=modality == "audio",
    )
    return pre, trunk, head, post


class ImageBindModel(nn.Module):
    """The reference's four ModuleDicts, holding only ``modalities``.

    Build under ``torch.device("meta")`` and load with ``assign=True`` to avoid allocating
    random weights that a checkpoint then overwrites (see ``checkpoint.load_model``).
    """

    def __init__(
        self, config: ImageBindConfig, modalities: Iterable[str] = BUILT_MODALITIES
    ) -> None:
        super().__init__()
        wanted = set(modalities)
        unknown = wanted - set(BUILT_MODALITIES)
        if unknown:
            raise ValueError(f"unknown modalities {sorted(unknown)}; built: {BUILT_MODALITIES}")
        self.config = config
        self.modalities = tuple(m for m in BUILT_MODALITIES if m in wanted)
        self.modality_preprocessors = nn.ModuleDict()
        self.modality_trunks = nn.ModuleDict()
        self.modality_heads = nn.ModuleDict()
        self.modality_postprocessors = nn.ModuleDict()
        for m in self.modalities:
            pre, trunk, head, post = _build(config, m)
            self.modality_preprocessors[m] = pre
            self.modality_trunks[m] = trunk
            self.modality_heads[m] = head
            self.modality_postprocessors[m] = post

    def forward(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        """The reference's output for one modality.

        An input with ndim >= 5 is ``[B, S, ...]`` clips: it runs as ``B*S`` items and the result
        is the mean over S of the *scaled, normalised* clip embeddings (so audio rows have norm
        <= 20, not 20). Vision takes ``[B,3,H,W]`` images or ``[B,S,3,T,H,W]`` videos.
        """
        clips = 0
        if x.ndim >= 5 and not (modality == "vision" and x.ndim == 5):
            clips = x.shape[1]
            x = x.reshape(x.shape[0] * clips, *x.shape[2:])
        tokens = self.modality_preprocessors[modality](x)
        if modality == "text":
            mask = self.modality_preprocessors["text"].mask.to(tokens.dtype)
            trunk_out = self.modality_trunks["text"](tokens, mask)
            head_out = self.modality_heads["text"](trunk_out, x.argmax(dim=-1))
        else:
            head_out = self.modality_heads[modality](self.modality_trunks[modality](tokens))
        out: torch.Tensor = self.modality_postprocessors[modality](head_out)
        if clips:
            out = out.reshape(-1, clips, out.shape[-1]).mean(dim=1)
        return out

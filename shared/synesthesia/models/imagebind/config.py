"""Architecture of an ImageBind model as data.

One dataclass describes every size the reference ``ImageBindModel.__init__`` takes for the three
modalities we build (vision, text, audio), so ``imagebind_huge`` and the tiny golden test model
are the same code. Depth, thermal and IMU are not built (no service needs them); their keys in an
official checkpoint are ignored when loading and kept when converting.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: Modalities this package builds, in the reference's order (which is also the state_dict order).
BUILT_MODALITIES: tuple[str, ...] = ("vision", "text", "audio")


@dataclass(frozen=True)
class TowerConfig:
    """One modality's Transformer trunk."""

    embed_dim: int  # token width D
    num_blocks: int  # number of ``blocks.N`` in the trunk
    num_heads: int  # attention heads (D must divide evenly)

    def __post_init__(self) -> None:
        if self.embed_dim % self.num_heads:
            raise ValueError(
                f"embed_dim {self.embed_dim} is not divisible by {self.num_heads} heads"
            )


@dataclass(frozen=True)
class ImageBindConfig:
    """Sizes of an ImageBind model. Defaults are ``imagebind_huge``."""

    out_embed_dim: int = 1024  # width of the shared space (before our re-normalisation)
    vision: TowerConfig = field(default_factory=lambda: TowerConfig(1280, 32, 16))
    text: TowerConfig = field(default_factory=lambda: TowerConfig(1024, 24, 16))
    audio: TowerConfig = field(default_factory=lambda: TowerConfig(768, 12, 12))
    # vision stem: an image is repeated to ``video_frames`` frames, then a Conv3d with
    # kernel = stride = ``kernel_size`` (t, h, w), no bias
    image_size: int = 224
    video_frames: int = 2
    kernel_size: tuple[int, int, int] = (2, 14, 14)
    # text
    vocab_size: int = 49408
    context_length: int = 77
    text_logit_scale_init: float = 1 / 0.07  # learnable; the checkpoint's value wins
    # audio stem: Conv2d(1, D, kernel, stride) over a [mel, frames] kaldi fbank, no bias
    audio_kernel_size: int = 16
    audio_stride: int = 10
    audio_num_mel_bins: int = 128
    audio_target_len: int = 204
    audio_logit_scale: float = 20.0  # fixed buffer in the reference
    max_logit_scale: float = 100.0  # the reference clamps exp(log_logit_scale) at this

    def tower(self, modality: str) -> TowerConfig:
        if modality not in BUILT_MODALITIES:
            raise KeyError(
                f"modality {modality!r} is not built; expected one of {BUILT_MODALITIES}"
            )
        tower: TowerConfig = getattr(self, modality)
        return tower

    @property
    def vision_tokens(self) -> int:
        kt, kh, kw = self.kernel_size
        return (self.video_frames // kt) * (self.image_size // kh) * (self.image_size // kw) + 1

    @property
    def audio_grid(self) -> tuple[int, int]:
        """(mel patches, time patches) of the audio Conv2d: (12, 19) for 128 x 204."""
        k, s = self.audio_kernel_size, self.audio_stride
        return (self.audio_num_mel_bins - k) // s + 1, (self.audio_target_len - k) // s + 1

    @property
    def audio_tokens(self) -> int:
        mel, time = self.audio_grid
        return mel * time + 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImageBindConfig:
        """Accepts our own ``to_dict()`` form, or the golden ``config.json`` (a dict with
        ``model_kwargs``, or those kwargs themselves, as ``ImageBindModel.__init__`` takes them)."""
        if "model_kwargs" in data:
            data = data["model_kwargs"]
        if "vision_embed_dim" in data:
            return cls._from_reference_kwargs(data)
        kwargs = dict(data)
        for name in BUILT_MODALITIES:
            if isinstance(kwargs.get(name), dict):
                kwargs[name] = TowerConfig(**kwargs[name])
        if "kernel_size" in kwargs:
            kwargs["kernel_size"] = tuple(kwargs["kernel_size"])
        return cls(**kwargs)

    @classmethod
    def _from_reference_kwargs(cls, kw: dict[str, Any]) -> ImageBindConfig:
        base = cls()

        def tower(name: str) -> TowerConfig:
            default = base.tower(name)
            return TowerConfig(
                kw.get(f"{name}_embed_dim", default.embed_dim),
                kw.get(f"{name}_num_blocks", default.num_blocks),
                kw.get(f"{name}_num_heads", default.num_heads),
            )

        return cls(
            out_embed_dim=kw.get("out_embed_dim", base.out_embed_dim),
            vision=tower("vision"),
            text=tower("text"),
            audio=tower("audio"),
            video_frames=kw.get("video_frames", base.video_frames),
            kernel_size=tuple(kw.get("kernel_size", base.kernel_size)),  # type: ignore[arg-type]
            audio_kernel_size=kw.get("audio_kernel_size", base.audio_kernel_size),
            audio_stride=kw.get("audio_stride", base.audio_stride),
            audio_num_mel_bins=kw.get("audio_num_mel_bins", base.audio_num_mel_bins),
            audio_target_len=kw.get("audio_target_len", base.audio_target_len),
        )

    @classmethod
    def from_json(cls, path: str | Path) -> ImageBindConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))


IMAGEBIND_HUGE = ImageBindConfig()

#: The sizes of golden set A (``../shared/golden/imagebind_a/config.json``): a tiny model with the
#: huge model's structure, for tests and for services started without a checkpoint.
IMAGEBIND_TEST = ImageBindConfig(
    out_embed_dim=32,
    vision=TowerConfig(64, 2, 4),
    text=TowerConfig(64, 2, 4),
    audio=TowerConfig(64, 2, 4),
)

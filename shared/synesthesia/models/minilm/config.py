"""Architecture and preprocessing of the ``synesthesia-minilm`` family, as data.

The config travels inside the weights file (safetensors metadata "config"), so serving and
training can never disagree on image size, mean/std, sample rate or mel bins.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

# How a tower turns its tokens into one vector (every mode ends in a linear head + L2 norm):
#   backbone - tokens -> the shared, frozen MiniLM Transformer -> mean pooling
#   hybrid   - the shared backbone's pooled output plus a linear bypass of the pooled tokens
#   stem     - mean pooling of the tokens, no Transformer (ablation)
#   own      - a per-modality trainable Transformer (``own_layers`` deep) instead of the shared one
TOWER_MODES = ("backbone", "hybrid", "stem", "own")

# Text anchors (``anchors`` > 0): the tower's unit vector z is re-expressed through a fixed bank
# of text vectors A (all-MiniLM-L6-v2 embeddings of a vocabulary, stored with the tower):
#   p = normalise(softmax(z . A^T / anchor_tau) . A),   out = normalise(blend * z + (1 - blend) * p)
# so that what the tower recognises lands where the words for it are, without the
# modality-specific part of z that a small training set leaves behind
# (docs/model-history.md, "text anchors"). ``anchor_tau`` > 0 with ``anchors`` = 0 in a
# training config asks the export to attach the training vocabulary; 0 = no anchors.


@dataclass(frozen=True)
class ImageCfg:
    image_size: int = 32  # pictures are resized (shorter side) and centre-cropped to this
    mean: tuple[float, float, float] = (0.4914, 0.4822, 0.4465)  # per-channel, on [0, 1]
    std: tuple[float, float, float] = (0.2470, 0.2435, 0.2616)
    channels: tuple[int, ...] = (64, 128, 256)  # conv stem widths; first conv is 2x2 patchify
    # Each stage after the first halves the grid: 32 -> 16 (patchify) -> 8 -> 4 => 16 tokens.
    blocks_per_stage: int = 1
    mode: str = "backbone"  # how tokens become a vector: see TOWER_MODES
    own_layers: int = 2  # mode "own": depth of the tower's own Transformer
    anchors: int = 0  # text anchors in the head (see above); 0 = none
    anchor_tau: float = 0.0
    anchor_blend: float = 0.5


@dataclass(frozen=True)
class AudioCfg:
    sample_rate_hz: int = 16_000
    window_seconds: float = 5.0  # long clips are split into windows whose vectors are averaged
    min_last_window_seconds: float = 1.0  # a shorter tail after the first window is dropped
    num_mel_bins: int = 64
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    fbank_mean: float = -6.0  # log-mel normalisation constants
    fbank_std: float = 4.0
    channels: tuple[int, ...] = (32, 64, 128)  # conv stem widths; each stage halves mel & time
    blocks_per_stage: int = 1
    # the first stage is a 2x2 patchify conv, laid out as the image stem (stems.conv_stages), so
    # that training can start the audio stem from the trained image stem (``init_from_image``)
    patchify: bool = False
    mode: str = "backbone"
    own_layers: int = 2
    anchors: int = 0
    anchor_tau: float = 0.0
    anchor_blend: float = 0.5
    # > 0: each window is also embedded from its busiest excerpt of this many seconds (centred
    # on its loudest frame, as the training's short excerpts are) and the two unit vectors are
    # averaged, ``busy_view_weight`` on the whole window; 0 = the whole window only
    busy_view_seconds: float = 0.0
    busy_view_weight: float = 0.5


@dataclass(frozen=True)
class TextCfg:
    max_tokens: int = 256  # all-MiniLM-L6-v2's max_seq_length in sentence-transformers


@dataclass(frozen=True)
class MiniLMConfig:
    dim: int = 384
    text: TextCfg = field(default_factory=TextCfg)
    image: ImageCfg = field(default_factory=ImageCfg)
    audio: AudioCfg = field(default_factory=AudioCfg)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> MiniLMConfig:
        raw: dict[str, Any] = json.loads(text)

        def build(kind: Any, values: dict[str, Any]) -> Any:
            fields = kind.__dataclass_fields__
            unknown = set(values) - set(fields)
            if unknown:
                raise ValueError(
                    f"unknown {kind.__name__} fields in weights config: {sorted(unknown)}"
                )
            return kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

        return cls(
            dim=raw.get("dim", 384),
            text=build(TextCfg, raw.get("text", {})),
            image=build(ImageCfg, raw.get("image", {})),
            audio=build(AudioCfg, raw.get("audio", {})),
        )

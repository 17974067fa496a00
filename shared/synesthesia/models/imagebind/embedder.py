"""The ImageBind family behind the Embedder contract.

Vectors leave unit-norm: the reference multiplies text and audio by a logit scale and averages
audio clips after scaling, so ``_encode`` re-normalises the reference output (for audio: the
normalised mean of the three clip embeddings; the scale is constant, so dropping it first or
last gives the same direction).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from synesthesia.errors import InvalidInput
from synesthesia.media import decode_audio, decode_audio_channels, decode_image, validate_text
from synesthesia.media.audio import DEFAULT_MAX_SECONDS
from synesthesia.media.image import DEFAULT_MAX_PIXELS
from synesthesia.media.text import DEFAULT_MAX_TEXT_BYTES
from synesthesia.modality import Modality
from synesthesia.models.device import resolve_device
from synesthesia.models.embedder import Embedder, ModelInfo, Prepared
from synesthesia.models.imagebind.model import ImageBindModel
from synesthesia.models.imagebind.preprocess import (
    AUDIO_CLIPS,
    AUDIO_SAMPLE_RATE,
    audio_to_clips,
    preprocess_image,
)
from synesthesia.models.imagebind.tokenizer import ClipTokenizer

#: our modality -> the reference's modality key
TOWER = {Modality.TEXT: "text", Modality.IMAGE: "vision", Modality.AUDIO: "audio"}
AudioChannels = Literal["reference", "mix"]


def _as_bytes(item: Any, what: str) -> bytes:
    if isinstance(item, bytes | bytearray | memoryview):
        return bytes(item)
    raise InvalidInput(f"expected encoded {what} bytes, got {type(item).__name__}")


class ImageBindEmbedder(Embedder):
    """Serves the modalities ``model`` was built with.

    ``audio_channels="reference"`` (default) reproduces the reference exactly: per-clip mean
    over all channels, then channel 0 only. ``"mix"`` uses the shared media decoder's mono mix
    (mean of channels), which hears both channels but departs from the reference on stereo.
    """

    def __init__(
        self,
        model: ImageBindModel,
        model_id: str,
        *,
        audio_channels: AudioChannels = "reference",
        max_audio_seconds: float = DEFAULT_MAX_SECONDS,
        max_image_pixels: int = DEFAULT_MAX_PIXELS,
        max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES,
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__()
        if audio_channels not in ("reference", "mix"):
            raise ValueError(f"audio_channels must be 'reference' or 'mix', not {audio_channels!r}")
        self.device = resolve_device(device)
        self.model = model.to(self.device)
        self.model_id = model_id
        self.audio_channels = audio_channels
        self.max_audio_seconds = max_audio_seconds
        self.max_image_pixels = max_image_pixels
        self.max_text_bytes = max_text_bytes
        served = {v: k for k, v in TOWER.items()}
        self._modalities = tuple(served[m] for m in model.modalities)
        self._dtype = next(model.parameters()).dtype
        self.tokenizer = ClipTokenizer() if Modality.TEXT in self._modalities else None

    def info(self) -> ModelInfo:
        cfg = self.model.config
        return ModelInfo(
            model_id=self.model_id,
            dim=cfg.out_embed_dim,
            modalities=self._modalities,
            max_text_tokens=cfg.context_length if Modality.TEXT in self._modalities else 0,
            max_audio_seconds=self.max_audio_seconds if Modality.AUDIO in self._modalities else 0,
            max_image_pixels=self.max_image_pixels if Modality.IMAGE in self._modalities else 0,
        )

    def _prepare(self, modality: Modality, item: Any) -> Prepared:
        if modality is Modality.TEXT:
            assert self.tokenizer is not None
            ids, truncated = self.tokenizer.encode_padded(validate_text(item, self.max_text_bytes))
            return Prepared(inputs={"x": ids}, truncated=truncated)
        if modality is Modality.IMAGE:
            image = decode_image(_as_bytes(item, "image"), self.max_image_pixels)
            return Prepared(inputs={"x": preprocess_image(image)})
        data = _as_bytes(item, "audio")
        if self.audio_channels == "reference":
            wave = torch.from_numpy(
                decode_audio_channels(data, AUDIO_SAMPLE_RATE, self.max_audio_seconds)
            )
        else:
            mono = decode_audio(data, AUDIO_SAMPLE_RATE, self.max_audio_seconds)
            wave = torch.from_numpy(mono).unsqueeze(0)
        try:
            clips = audio_to_clips(wave)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        return Prepared(inputs={"x": clips}, windows=AUDIO_CLIPS)

    @torch.inference_mode()
    def _encode(self, modality: Modality, prepared: Sequence[Prepared]) -> np.ndarray:
        batch = torch.stack([p.inputs["x"] for p in prepared])
        dtype = self._dtype if batch.is_floating_point() else batch.dtype
        batch = batch.to(self.device, dtype, non_blocking=True)
        out = self.model(TOWER[modality], batch)  # audio: [B, 3, 1, 128, 204] -> clip mean
        return F.normalize(out.float(), dim=-1).cpu().numpy()

"""``MiniLMEmbedder``: the Embedder contract over ``SynesthesiaMiniLM``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer

from synesthesia.errors import InvalidInput
from synesthesia.media import decode_audio, decode_image, validate_text
from synesthesia.media.audio import DEFAULT_MAX_SECONDS
from synesthesia.media.image import DEFAULT_MAX_PIXELS
from synesthesia.media.text import (
    DEFAULT_MAX_TEXT_BYTES,
    wordpiece_prefix,
    wordpiece_separators,
)
from synesthesia.modality import Modality
from synesthesia.models.device import resolve_device, resolve_precision
from synesthesia.models.embedder import Embedder, ModelInfo, Prepared, l2_normalize
from synesthesia.models.minilm.preprocess import audio_to_windows, image_to_tensor
from synesthesia.models.minilm.weights import load_model, minilm_dir

MODEL_NAME = "synesthesia-minilm"


def load_tokenizer(max_tokens: int) -> Tokenizer:
    tok = Tokenizer.from_file(str(minilm_dir() / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=max_tokens)
    return tok


class MiniLMEmbedder(Embedder):
    def __init__(
        self,
        weights: str | Path | None = None,
        modalities: Iterable[Modality | str] = tuple(Modality),
        max_image_pixels: int = DEFAULT_MAX_PIXELS,
        max_audio_seconds: float = DEFAULT_MAX_SECONDS,
        max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES,
        device: str | torch.device = "cpu",
        precision: str = "fp32",
    ) -> None:
        super().__init__()
        mods = tuple(sorted({Modality.parse(m) for m in modalities}, key=list(Modality).index))
        self.device = resolve_device(device)  # a bad device or precision fails before loading
        self.dtype = resolve_precision(precision, self.device)
        model, meta = load_model(weights, [m.value for m in mods])
        self.model = model.to(self.device, self.dtype)
        self.cfg = self.model.cfg
        self.revision = meta.get("revision", "unknown")
        self.tokenizer = load_tokenizer(self.cfg.text.max_tokens) if Modality.TEXT in mods else None
        self.max_image_pixels = max_image_pixels
        self.max_audio_seconds = max_audio_seconds
        self.max_text_bytes = max_text_bytes
        self._text_keep = self.cfg.text.max_tokens - (
            self.tokenizer.num_special_tokens_to_add(False) if self.tokenizer else 0
        )
        self._separators = wordpiece_separators(self.tokenizer) if self.tokenizer else None
        self._info = ModelInfo(
            # The revision names the image/audio weights: vectors of another revision are not
            # comparable, and a collection refuses them.
            model_id=f"{MODEL_NAME}@{self.revision}",
            dim=self.cfg.dim,
            modalities=mods,
            max_text_tokens=self.cfg.text.max_tokens,
            max_audio_seconds=max_audio_seconds,
            max_image_pixels=max_image_pixels,
        )

    def info(self) -> ModelInfo:
        return self._info

    # -- prepare: one item, CPU only ---------------------------------------------------------
    def _prepare(self, modality: Modality, item: Any) -> Prepared:
        if modality is Modality.TEXT:
            assert self.tokenizer is not None and self._separators is not None
            text = wordpiece_prefix(  # the part of a long text that reaches the context
                validate_text(item, self.max_text_bytes),
                self._count_tokens,
                self._text_keep,
                self._separators,
            )
            enc = self.tokenizer.encode(text)
            return Prepared(
                {"ids": torch.tensor(enc.ids, dtype=torch.long)}, truncated=bool(enc.overflowing)
            )
        if not isinstance(item, bytes | bytearray | memoryview):
            raise InvalidInput(
                f"expected encoded {modality.value} bytes, got {type(item).__name__}"
            )
        data = bytes(item)
        if modality is Modality.IMAGE:
            img = decode_image(data, self.max_image_pixels)
            return Prepared({"pixels": image_to_tensor(img, self.cfg.image)})
        wave = decode_audio(data, self.cfg.audio.sample_rate_hz, self.max_audio_seconds)
        fbank, frames = audio_to_windows(wave, self.cfg.audio)
        return Prepared({"fbank": fbank, "frames": frames}, windows=int(fbank.shape[0]))

    def _count_tokens(self, chunk: str) -> int:
        assert self.tokenizer is not None
        return len(self.tokenizer.encode(chunk, add_special_tokens=False).ids)

    # -- encode: one forward pass over many items -------------------------------------------
    def _float_in(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.device, self.dtype, non_blocking=True)

    def _vectors_out(self, x: torch.Tensor) -> np.ndarray:
        """float32 on the CPU; re-normalised in float32 when the model ran in half precision
        (fp32 vectors pass through untouched)."""
        out = x.float().cpu().numpy()
        return out if self.dtype is torch.float32 else l2_normalize(out)

    @torch.inference_mode()
    def _encode(self, modality: Modality, prepared: Sequence[Prepared]) -> np.ndarray:
        if modality is Modality.TEXT:
            seqs = [p.inputs["ids"] for p in prepared]
            longest = max(len(s) for s in seqs)
            ids = torch.zeros(len(seqs), longest, dtype=torch.long)
            valid = torch.zeros(len(seqs), longest, dtype=torch.bool)
            for i, s in enumerate(seqs):
                ids[i, : len(s)] = s
                valid[i, : len(s)] = True
            vecs = self.model.encode_text(ids.to(self.device), valid.to(self.device))
            return self._vectors_out(vecs)
        if modality is Modality.IMAGE:
            pixels = torch.stack([p.inputs["pixels"] for p in prepared])
            return self._vectors_out(self.model.encode_image(self._float_in(pixels)))
        fbank = torch.cat([p.inputs["fbank"] for p in prepared])
        frames = torch.cat([p.inputs["frames"] for p in prepared])
        per_window = self._vectors_out(
            self.model.encode_audio(self._float_in(fbank), frames.to(self.device))
        )
        out, start = [], 0
        for p in prepared:  # average the windows of each clip, then re-normalise
            out.append(per_window[start : start + p.windows].mean(axis=0))
            start += p.windows
        return l2_normalize(np.stack(out))

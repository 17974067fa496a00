"""Tiny valid inputs generated in memory, used to warm a model up before reporting SERVING."""

from __future__ import annotations

import io

import numpy as np
from synesthesia.modality import Modality


def synthetic_png(size: int = 48) -> bytes:
    from PIL import Image

    y, x = np.mgrid[0:size, 0:size]
    rgb = np.stack([x * 255 // size, y * 255 // size, (x + y) * 127 // size], -1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def synthetic_wav(seconds: float = 1.0, sr: int = 16_000, freq_hz: float = 440.0) -> bytes:
    import soundfile as sf

    t = np.arange(int(seconds * sr)) / sr
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32), sr, format="WAV")
    return buf.getvalue()


def warmup_item(modality: Modality) -> str | bytes:
    if modality is Modality.TEXT:
        return "a warm-up sentence"
    if modality is Modality.IMAGE:
        return synthetic_png()
    return synthetic_wav()

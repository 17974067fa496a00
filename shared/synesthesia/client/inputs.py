"""What the clients accept as a picture or a sound, turned into the encoded bytes the services
take: bytes as they are; a path (``pathlib.Path`` or a str) read from disk; a PIL image encoded
as PNG; a numpy array — a picture as HxW or HxWxC uint8 (PNG), a sound as a 1-D (or [n,
channels]) float array in [-1, 1] with its ``sample_rate`` (32-bit float WAV). Text is a str."""

from __future__ import annotations

import io
import os
from typing import Any

import numpy as np

from synesthesia.errors import InvalidInput
from synesthesia.modality import Modality

#: Anything the clients turn into encoded media (see the module's doc).
Media = bytes | bytearray | memoryview | str | os.PathLike[str] | np.ndarray | Any


def _png(image: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _image_array(a: np.ndarray) -> bytes:
    from PIL import Image

    if a.dtype != np.uint8 or a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 3, 4)):
        raise InvalidInput(
            f"a picture array must be HxW or HxWxC (C 1, 3 or 4) uint8, got {a.dtype} {a.shape}"
        )
    return _png(Image.fromarray(a[:, :, 0] if a.ndim == 3 and a.shape[2] == 1 else a))


def _audio_array(a: np.ndarray, sample_rate: int | None) -> bytes:
    import soundfile as sf

    if not sample_rate or sample_rate <= 0:
        raise InvalidInput("a sound given as an array needs its sample_rate (e.g. 16000)")
    if a.ndim not in (1, 2) or not np.issubdtype(a.dtype, np.number) or a.size == 0:
        raise InvalidInput(f"a sound array must be 1-D (or [n, channels]) numbers, got {a.shape}")
    buf = io.BytesIO()
    sf.write(buf, np.asarray(a, dtype=np.float32), int(sample_rate), format="WAV", subtype="FLOAT")
    return buf.getvalue()


def media_bytes(value: Media, modality: Modality | str, sample_rate: int | None = None) -> bytes:
    """The encoded bytes of a picture or sound given in any of the accepted forms."""
    m = Modality.parse(modality)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str | os.PathLike):
        try:
            with open(value, "rb") as f:
                return f.read()
        except OSError as exc:
            raise InvalidInput(f"cannot read {os.fspath(value)!r}: {exc.strerror}") from None
    if isinstance(value, np.ndarray):
        return _image_array(value) if m is Modality.IMAGE else _audio_array(value, sample_rate)
    if m is Modality.IMAGE and callable(getattr(value, "save", None)) and hasattr(value, "mode"):
        return _png(value)  # a PIL image
    if m is Modality.IMAGE:
        wanted = "a picture: give bytes, a path, a PIL image or an HxWxC uint8 array"
    else:
        wanted = "a sound: give bytes, a path or a float array with its sample_rate"
    raise InvalidInput(f"cannot use a {type(value).__name__} as {wanted}")


def content(value: Media, modality: Modality | str, sample_rate: int | None = None) -> str | bytes:
    """What one encoder item carries: a str for text, else encoded bytes."""
    m = Modality.parse(modality)
    if m is Modality.TEXT:
        if not isinstance(value, str | bytes):
            raise InvalidInput(f"text must be a str, got {type(value).__name__}")
        return value
    return media_bytes(value, m, sample_rate)

"""Audio decoding that keeps the channels, for the reference's stereo handling.

``synesthesia.media.decode_audio`` mixes channels to mono. ImageBind instead subtracts each
clip's mean over ALL channels and then reads channel 0 only; on stereo files of the golden set
the two choices differ by up to 1.2 in normalised fbank units, so parity needs the channels.
This follows the media module's policy otherwise (soundfile decoding, the same length limits,
non-finite samples rejected, InvalidInput saying why).
"""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf
import torch

from synesthesia.errors import InvalidInput
from synesthesia.media.audio import DEFAULT_MAX_SECONDS, DEFAULT_MIN_SECONDS
from synesthesia.models.imagebind.preprocess import AUDIO_SAMPLE_RATE, resample


def decode_audio_channels(
    data: bytes,
    max_seconds: float = DEFAULT_MAX_SECONDS,
    min_seconds: float = DEFAULT_MIN_SECONDS,
    target_sr: int = AUDIO_SAMPLE_RATE,
) -> torch.Tensor:
    """Encoded audio bytes -> float32 ``[channels, n]`` at ``target_sr``."""
    if not data:
        raise InvalidInput("empty audio (0 bytes)")
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            sr = f.samplerate
            if sr <= 0:
                raise InvalidInput(f"audio header has an invalid sample rate ({sr})")
            if f.frames / sr > max_seconds:
                raise InvalidInput(
                    f"audio is {f.frames / sr:.1f} s long; the limit is {max_seconds:g} s"
                )
            wave = f.read(dtype="float32", always_2d=True)
    except InvalidInput:
        raise
    except Exception as exc:  # LibsndfileError, RuntimeError, TypeError …
        raise InvalidInput(
            f"not decodable audio ({len(data)} bytes; accepted: WAV, FLAC, OGG/Vorbis, MP3): {exc}"
        ) from None
    seconds = wave.shape[0] / sr
    if seconds < min_seconds:
        raise InvalidInput(
            f"audio is {wave.shape[0]} samples ({seconds * 1000:.1f} ms) long; "
            f"the minimum is {min_seconds * 1000:g} ms"
        )
    if seconds > max_seconds:  # header frame counts can be missing (e.g. some MP3s)
        raise InvalidInput(f"audio is {seconds:.1f} s long; the limit is {max_seconds:g} s")
    if not np.isfinite(wave).all():
        raise InvalidInput("audio contains non-finite samples (NaN or inf)")
    return resample(torch.from_numpy(np.ascontiguousarray(wave.T)), sr, target_sr)

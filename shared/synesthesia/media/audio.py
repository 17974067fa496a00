"""Audio decoding policy (documented in docs/operations.md#media-policy).

* Formats: whatever libsndfile reads through ``soundfile``: WAV, FLAC, OGG/Vorbis, MP3, AIFF.
* The duration is read from the header first; clips longer than ``max_seconds`` are rejected
  before decoding, clips shorter than ``min_seconds`` are rejected (nothing to hear).
* Multichannel audio is mixed to mono (the mean of the channels), then resampled to the model's
  rate with torchaudio (band-limited sinc). Non-finite samples are rejected.
* Padding short clips and splitting long ones into windows is the model's job (it knows its
  window length), not the decoder's.
"""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf

from synesthesia.errors import InvalidInput

DEFAULT_MAX_SECONDS = 600.0
DEFAULT_MIN_SECONDS = 0.05


def read_audio(
    data: bytes,
    max_seconds: float = DEFAULT_MAX_SECONDS,
    min_seconds: float = DEFAULT_MIN_SECONDS,
) -> tuple[np.ndarray, int]:
    """Decode with every check of the policy; returns (float32 [frames, channels], sample rate)."""
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
    except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError / TypeError …
        raise InvalidInput(
            f"not decodable audio ({len(data)} bytes; accepted: WAV, FLAC, OGG/Vorbis, MP3): {exc}"
        ) from None
    if wave.shape[0] == 0:
        raise InvalidInput("audio has no samples")
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
    return wave, sr


def decode_audio(
    data: bytes,
    target_sr: int = 16_000,
    max_seconds: float = DEFAULT_MAX_SECONDS,
    min_seconds: float = DEFAULT_MIN_SECONDS,
) -> np.ndarray:
    """Encoded audio bytes -> float32 mono at ``target_sr`` (channels averaged), or InvalidInput."""
    wave, sr = read_audio(data, max_seconds, min_seconds)
    mono = wave.mean(axis=1) if wave.shape[1] > 1 else wave[:, 0]
    return resample(np.ascontiguousarray(mono, dtype=np.float32), sr, target_sr)


def decode_audio_channels(
    data: bytes,
    target_sr: int = 16_000,
    max_seconds: float = DEFAULT_MAX_SECONDS,
    min_seconds: float = DEFAULT_MIN_SECONDS,
) -> np.ndarray:
    """Like ``decode_audio`` but keeps the channels: float32 ``[channels, n]`` at ``target_sr``
    (for models whose reference preprocessing treats channels itself, e.g. ImageBind)."""
    wave, sr = read_audio(data, max_seconds, min_seconds)
    return resample(np.ascontiguousarray(wave.T, dtype=np.float32), sr, target_sr)


def resample(wave: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Band-limited sinc resampling (torchaudio defaults) along the last axis."""
    if orig_sr == target_sr:
        return wave
    import torch
    import torchaudio.functional as AF

    out = AF.resample(torch.from_numpy(wave), orig_sr, target_sr)
    return out.numpy().astype(np.float32, copy=False)

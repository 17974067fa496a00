"""Audio decoding policy (documented in docs/operations.md#media-policy).

* Formats: whatever libsndfile reads through ``soundfile``: WAV, FLAC, OGG/Vorbis, MP3, AIFF.
* The duration is read from the header first; clips longer than ``max_seconds`` are rejected
  before decoding, and so are clips that decode to more than ``max_seconds`` x 96,000 samples
  (frames x channels: 600 s of 48 kHz stereo); decoding never reads past either limit. Clips
  shorter than ``min_seconds`` are rejected (nothing to hear).
* Multichannel audio is mixed to mono (the mean of the channels), then resampled to the model's
  rate with torchaudio's band-limited sinc filter, in time and memory linear in the clip for
  every sample rate (``resample``; odd rates such as 44,101 Hz no longer build a kernel of
  billions of taps). Non-finite samples are rejected.
* A header that declares more than twice the frames the file holds is "truncated"; error
  messages say what is wrong with the file, never Python internals.
* Padding short clips and splitting long ones into windows is the model's job (it knows its
  window length), not the decoder's.
"""

from __future__ import annotations

import io
import math
import re
from fractions import Fraction

import numpy as np
import soundfile as sf

from synesthesia.errors import InvalidInput

DEFAULT_MAX_SECONDS = 600.0
DEFAULT_MIN_SECONDS = 0.05
#: Decoded samples (frames x channels) are at most ``max_seconds`` times this: 600 s of 48 kHz
#: stereo (57.6 M samples, 230 MB as float32), 300 s of 96 kHz stereo, 200 s of 48 kHz 5.1. A
#: 64 MB FLAC of silence could otherwise claim 600 s of 192 kHz x 8 channels (3.7 GB).
MAX_DECODED_RATE = 96_000


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
            max_samples = round(max_seconds * MAX_DECODED_RATE)
            if f.frames * f.channels > max_samples:
                raise InvalidInput(
                    f"audio decodes to {f.frames:,} frames x {f.channels} channels; the limit is "
                    f"{max_samples:,} samples ({max_seconds:g} s of 48 kHz stereo): "
                    "downsample or split it"
                )
            declared = f.frames
            # at most one frame past either limit, whatever the header says (e.g. MP3)
            most = min(int(max_seconds * sr), max_samples // f.channels) + 1
            wave = f.read(frames=most, dtype="float32", always_2d=True)
    except InvalidInput:
        raise
    except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError / TypeError …
        raise InvalidInput(
            f"not decodable audio ({len(data):,} bytes; accepted: WAV, FLAC, OGG/Vorbis, MP3): "
            f"{_decode_problem(exc)}"
        ) from None
    if wave.shape[0] == 0:
        raise InvalidInput("audio has no samples")
    if 0 < declared < (1 << 62) and wave.shape[0] < declared // 2:
        raise InvalidInput(
            f"audio is truncated: its header declares {declared:,} frames, the file holds "
            f"{wave.shape[0]:,}"
        )
    seconds = wave.shape[0] / sr
    if seconds < min_seconds:
        raise InvalidInput(
            f"audio is {wave.shape[0]} samples ({seconds * 1000:.1f} ms) long; "
            f"the minimum is {min_seconds * 1000:g} ms"
        )
    if seconds > max_seconds:  # header frame counts can be missing (e.g. some MP3s)
        raise InvalidInput(f"audio is over {max_seconds:g} s long; the limit is {max_seconds:g} s")
    if wave.size > max_samples:
        raise InvalidInput(f"audio decodes to over {max_samples:,} samples; downsample or split it")
    if not np.isfinite(wave).all():
        raise InvalidInput("audio contains non-finite samples (NaN or inf)")
    return wave, sr


def _decode_problem(exc: Exception) -> str:
    """What libsndfile said about the file, without Python internals (object reprs, types)."""
    said = getattr(exc, "error_string", None)  # soundfile.LibsndfileError: libsndfile's words
    if not isinstance(said, str) or not said.strip():
        return "the file is corrupt or truncated"
    said = re.sub(r"<[^<>]* at 0x[0-9a-fA-F]+>:?\s*", "", said).strip().rstrip(".")
    return said[:1].lower() + said[1:] if said else "the file is corrupt or truncated"


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


# --- resampling with a cost linear in the input for every rate ------------------------------
#
# torchaudio's sinc resampler reduces orig/target to lowest terms p/q and convolves with a dense
# kernel of q x (p + 2w) taps (w = ceil(6 p / (0.99 min(p, q)))), most of them zero: at 16 kHz
# from 44.1 kHz p/q = 441/160 (76k taps), but from 44,101 Hz p/q = 44101/16000 (706M taps,
# 31.7 s and 9.4 GB for a 1 s clip). Three paths, chosen from (p, q) alone:
#
# * "torchaudio": its kernel has at most TORCHAUDIO_MAX_TAPS taps and costs at most
#   TORCHAUDIO_MAX_MACS multiply-adds per sample of the longer side (8, 11.025, 22.05, 32, 44.1,
#   48, 88.2, 96, 192 kHz ... to 16 kHz): torchaudio itself, bit for bit as before (the
#   ImageBind goldens' 8/44.1/48 kHz files included).
# * "polyphase": the same windowed-sinc filter (same formula, same cut-off and width), exact
#   ratio, but only the 2w + 2 taps around each output sample are stored and used: a table of
#   q x (2w + 2) weights (at most POLYPHASE_MAX_TAPS) and 2w + 2 multiply-adds per output
#   sample. It equals torchaudio up to float32 rounding (~1e-6).
# * "approximate": only when that table would be larger, i.e. downsampling by more than ~10x to
#   a q of several thousand (e.g. 192,001 Hz); the ratio is replaced by the closest fraction
#   whose table fits (Fraction.limit_denominator). The clip is then read at a rate off by a
#   relative error below 1/(x N) (x = orig/target, N the denominator bound, >= 2^21/(12.2 x + 4)),
#   i.e. below 7e-6 (0.012 cents of pitch, 7 us per second of time) for every rate.
TORCHAUDIO_MAX_TAPS = 1 << 20
TORCHAUDIO_MAX_MACS = 700
POLYPHASE_MAX_TAPS = 1 << 21
_LOWPASS_WIDTH = 6  # torchaudio's defaults
_ROLLOFF = 0.99
_CHUNK_ELEMENTS = 1 << 20  # output samples x taps gathered at once (4 MB of float32)


def _half_width(p: int, q: int) -> int:
    return math.ceil(_LOWPASS_WIDTH * p / (min(p, q) * _ROLLOFF))


def resample_plan(orig_sr: int, target_sr: int) -> tuple[str, int, int]:
    """(path, p, q): resampling reads the input as if its rate were ``target_sr * p / q``;
    p/q == orig_sr/target_sr exactly except on the "approximate" path."""
    ratio = Fraction(int(orig_sr), int(target_sr))
    p, q = ratio.numerator, ratio.denominator
    w = _half_width(p, q)
    taps = q * (p + 2 * w)
    if taps <= TORCHAUDIO_MAX_TAPS and taps / max(p, q) <= TORCHAUDIO_MAX_MACS:
        return "torchaudio", p, q
    if q * (2 * w + 2) <= POLYPHASE_MAX_TAPS:
        return "polyphase", p, q
    # Only downsampling gets here (upsampling has w = 7: q * 16 <= 2^21 for any q <= 131072,
    # and q divides target_sr). Largest denominator bound whose table fits.
    bound = max(1, int(POLYPHASE_MAX_TAPS / (12.2 * float(ratio) + 4)))
    while True:
        approx = ratio.limit_denominator(bound)
        p, q = approx.numerator, approx.denominator
        if q * (2 * _half_width(p, q) + 2) <= POLYPHASE_MAX_TAPS or bound == 1:
            return "approximate", p, q
        bound = max(1, bound * 3 // 4)


def _polyphase_table(p: int, q: int, w: int) -> np.ndarray:
    """Weights [q, 2w + 2]: row r serves the outputs j with (j p) mod q == r, whose input
    position j p / q lies in [c, c + 1), c = floor(j p / q); column k weights input c - w + k.
    torchaudio's formula: t = (input - position) * base / p, clamped to +-6, Hann window."""
    base = min(p, q) * _ROLLOFF
    k = np.arange(2 * w + 2, dtype=np.float64) - w
    table = np.empty((q, 2 * w + 2), dtype=np.float32)
    rows = max(1, (1 << 16) // (2 * w + 2))
    for start in range(0, q, rows):
        r = np.arange(start, min(q, start + rows), dtype=np.float64)[:, None]
        t = (k[None, :] - r / q) * (base / p)
        t = np.clip(t, -_LOWPASS_WIDTH, _LOWPASS_WIDTH)
        window = np.cos(t * math.pi / _LOWPASS_WIDTH / 2) ** 2
        t = t * math.pi
        with np.errstate(invalid="ignore", divide="ignore"):
            sinc = np.where(t == 0, 1.0, np.sin(t) / t)
        table[start : start + len(r)] = sinc * window * (base / p)
    return table


def _resample_polyphase(wave: np.ndarray, p: int, q: int) -> np.ndarray:
    """Sparse polyphase windowed-sinc resampling of ``wave`` [..., n] by q/p (see above)."""
    import torch

    w = _half_width(p, q)
    table = torch.from_numpy(_polyphase_table(p, q, w))
    shape = wave.shape
    flat = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32).reshape(-1, shape[-1]))
    n = shape[-1]
    n_out = -(-q * n // p)  # ceil, as torchaudio
    padded = torch.nn.functional.pad(flat, (w, w + 2))
    windows = padded.unfold(1, 2 * w + 2, 1)  # a view: [channels, n + 1, 2w + 2]
    out = torch.empty(flat.shape[0], n_out, dtype=torch.float32)
    chunk = max(1, _CHUNK_ELEMENTS // (flat.shape[0] * (2 * w + 2)))
    for start in range(0, n_out, chunk):
        j = torch.arange(start, min(n_out, start + chunk), dtype=torch.int64)
        first = (j * p) // q  # c; in the padded signal input c - w sits at index c
        phase = (j * p) % q
        out[:, start : start + len(j)] = torch.einsum("cjk,jk->cj", windows[:, first], table[phase])
    return out.numpy().reshape(*shape[:-1], n_out)


def resample(wave: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Band-limited sinc resampling (torchaudio's filter) along the last axis, in time and
    memory linear in the input for every pair of rates (see ``resample_plan``)."""
    if orig_sr == target_sr:
        return wave
    path, p, q = resample_plan(orig_sr, target_sr)
    if path == "torchaudio":
        import torch
        import torchaudio.functional as AF

        out = AF.resample(torch.from_numpy(wave), orig_sr, target_sr)
        return out.numpy().astype(np.float32, copy=False)
    return _resample_polyphase(wave, p, q)

"""ImageBind's image and audio preprocessing, number for number.

These functions are pure (decoded pixels / waveforms in, tensors out) so they can be checked
against the golden files; decoding bytes is ``synesthesia.media``'s job.

Audio reproduces two reference quirks on purpose (both change the numbers):
* each clip's mean is subtracted IN PLACE on the shared 16 kHz buffer, clip by clip, so where
  clips overlap a later clip sees samples already shifted by an earlier clip's mean;
* the mean is taken over all channels, but the fbank reads channel 0 only.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import torch
import torchaudio.compliance.kaldi as kaldi
from PIL import Image

from synesthesia.media.audio import resample as media_resample

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGE_SIZE = 224

AUDIO_SAMPLE_RATE = 16_000
AUDIO_CLIP_SECONDS = 2
AUDIO_CLIPS = 3
AUDIO_MEL_BINS = 128
AUDIO_TARGET_FRAMES = 204
AUDIO_MEAN = -4.268
AUDIO_STD = 9.138
MIN_CLIP_SAMPLES = 400  # one 25 ms frame; the reference asserts on shorter clips


def resize_and_crop(img: Image.Image, size: int = IMAGE_SIZE) -> Image.Image:
    """Short side to ``size`` with Pillow's (antialiased) bicubic, long side
    ``int(size * long / short)``, then a centre crop at ``int(round((L - size) / 2))``."""
    if img.mode != "RGB":
        img = img.convert("RGB")
    w, h = img.size
    if w <= h:
        new_w, new_h = size, int(size * h / w)
    else:
        new_w, new_h = int(size * w / h), size
    img = img.resize((new_w, new_h), Image.Resampling.BICUBIC)
    left = round((new_w - size) / 2.0)
    top = round((new_h - size) / 2.0)
    return img.crop((left, top, left + size, top + size))


def normalize_pixels(crop: np.ndarray) -> torch.Tensor:
    """uint8 ``[H, W, 3]`` -> float32 ``[3, H, W]``: ``(x / 255 - mean) / std`` in float32."""
    x = torch.from_numpy(np.array(crop, dtype=np.uint8)).permute(2, 0, 1).float().div(255)
    mean = torch.tensor(CLIP_MEAN, dtype=torch.float32)[:, None, None]
    std = torch.tensor(CLIP_STD, dtype=torch.float32)[:, None, None]
    return (x - mean) / std


def preprocess_image(img: Image.Image) -> torch.Tensor:
    """A decoded image -> the ``[3, 224, 224]`` tensor the vision tower takes."""
    return normalize_pixels(np.asarray(resize_and_crop(img)))


def resample(wave: torch.Tensor, orig_sr: int, target_sr: int = AUDIO_SAMPLE_RATE) -> torch.Tensor:
    """torchaudio's default band-limited sinc resampling (as the reference), all channels; the
    shared media path, so that an odd rate costs time linear in the clip (torchaudio itself,
    bit for bit, at the reference's rates)."""
    if orig_sr == target_sr:
        return wave
    return torch.from_numpy(media_resample(wave.numpy(), orig_sr, target_sr))


def clip_bounds(
    num_samples: int,
    sample_rate: int = AUDIO_SAMPLE_RATE,
    clip_seconds: int = AUDIO_CLIP_SECONDS,
    clips: int = AUDIO_CLIPS,
) -> list[tuple[int, int]]:
    """Sample bounds of the reference's ``ConstantClipsPerVideoSampler``: ``clips`` clips spread
    evenly from 0 to the end, computed in exact fractions from the float duration. There are
    always ``clips`` clips; a file of ``clip_seconds`` or less gives identical clips covering
    the whole file (the end bound may exceed the length; slicing clips it)."""
    duration = num_samples / sample_rate
    max_start = Fraction(max(duration - clip_seconds, 0))
    step = max_start / max(clips - 1, 1)
    bounds = []
    for i in range(clips):
        start = i * step
        end = start + clip_seconds
        bounds.append((int(start * sample_rate), int(end * sample_rate)))
    return bounds


def clip_fbank(clip: torch.Tensor, sample_rate: int = AUDIO_SAMPLE_RATE) -> torch.Tensor:
    """One clip ``[C, L]`` (already mean-subtracted) -> normalised ``[1, 128, 204]``."""
    fbank = kaldi.fbank(
        clip,
        htk_compat=True,
        sample_frequency=sample_rate,
        use_energy=False,
        window_type="hanning",
        num_mel_bins=AUDIO_MEL_BINS,
        dither=0.0,
        frame_length=25,
        frame_shift=10,
    ).transpose(0, 1)
    frames = fbank.shape[1]
    if frames < AUDIO_TARGET_FRAMES:
        fbank = torch.nn.functional.pad(fbank, (0, AUDIO_TARGET_FRAMES - frames))
    else:
        fbank = fbank[:, :AUDIO_TARGET_FRAMES]
    mean = torch.tensor(AUDIO_MEAN, dtype=torch.float32)
    std = torch.tensor(AUDIO_STD, dtype=torch.float32)
    return ((fbank - mean) / std).unsqueeze(0)


def audio_to_clips(wave: torch.Tensor, sample_rate: int = AUDIO_SAMPLE_RATE) -> torch.Tensor:
    """A 16 kHz float32 waveform ``[C, n]`` (or ``[n]``) -> ``[3, 1, 128, 204]`` fbank clips.

    Works on a copy: the reference's in-place mean subtraction is reproduced inside it, and the
    caller's array is left alone.
    """
    if wave.ndim == 1:
        wave = wave.unsqueeze(0)
    wave = wave.to(torch.float32).clone()
    bounds = clip_bounds(wave.shape[1], sample_rate)
    if min(wave[:, a:b].shape[1] for a, b in bounds) < MIN_CLIP_SAMPLES:
        raise ValueError(
            f"audio has {wave.shape[1]} samples at {sample_rate} Hz; at least "
            f"{MIN_CLIP_SAMPLES} (25 ms) are needed for one fbank frame"
        )
    out = []
    for a, b in bounds:
        clip = wave[:, a:b]
        clip -= clip.mean()  # in place on the shared buffer, as the reference
        out.append(clip_fbank(clip, sample_rate))
    return torch.stack(out)

"""Preprocessing that travels with the model config: decoded media -> model input tensors."""

from __future__ import annotations

import math

import numpy as np
import torch
import torchaudio.compliance.kaldi as kaldi
from PIL import Image

from synesthesia.models.minilm.config import AudioCfg, ImageCfg


def image_to_tensor(img: Image.Image, cfg: ImageCfg) -> torch.Tensor:
    """RGB PIL image -> normalised [3, S, S]: shorter side resized to S (bicubic, antialiased),
    then a centre crop."""
    s = cfg.image_size
    w, h = img.size
    if (w, h) != (s, s):
        scale = s / min(w, h)
        nw, nh = max(s, round(w * scale)), max(s, round(h * scale))
        img = img.resize((nw, nh), Image.Resampling.BICUBIC, reducing_gap=None)
        left, top = (nw - s) // 2, (nh - s) // 2
        img = img.crop((left, top, left + s, top + s))
    arr = np.asarray(img, dtype=np.float32) / 255.0
    return pixels_to_tensor(arr, cfg)


def pixels_to_tensor(arr: np.ndarray, cfg: ImageCfg) -> torch.Tensor:
    """[H, W, 3] float in [0, 1] (or a batch [..., H, W, 3]) -> normalised channels-first."""
    mean = np.asarray(cfg.mean, dtype=np.float32)
    std = np.asarray(cfg.std, dtype=np.float32)
    x = (arr - mean) / std
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, -3), dtype=np.float32))


def window_frames(cfg: AudioCfg) -> int:
    """Number of fbank frames of one full window."""
    samples = round(cfg.window_seconds * cfg.sample_rate_hz)
    flen = round(cfg.frame_length_ms * cfg.sample_rate_hz / 1000)
    fshift = round(cfg.frame_shift_ms * cfg.sample_rate_hz / 1000)
    return 1 + (samples - flen) // fshift


def split_windows(wave: np.ndarray, cfg: AudioCfg) -> list[np.ndarray]:
    """Cut a 16 kHz waveform into consecutive windows. The first window is always kept (short
    clips are padded later, with the padding masked); a tail shorter than
    ``min_last_window_seconds`` after it is dropped."""
    win = round(cfg.window_seconds * cfg.sample_rate_hz)
    min_tail = round(cfg.min_last_window_seconds * cfg.sample_rate_hz)
    out = [wave[:win]]
    for start in range(win, len(wave), win):
        chunk = wave[start : start + win]
        if len(chunk) >= min_tail:
            out.append(chunk)
    return out


def log_mel(wave: np.ndarray | torch.Tensor, cfg: AudioCfg) -> torch.Tensor:
    """Kaldi-compatible log-mel filterbank [T, M], normalised with the config's constants."""
    w = torch.as_tensor(wave, dtype=torch.float32)
    flen = round(cfg.frame_length_ms * cfg.sample_rate_hz / 1000)
    if w.numel() < flen:  # at least one frame
        w = torch.nn.functional.pad(w, (0, flen - w.numel()))
    fb = kaldi.fbank(
        w.unsqueeze(0),
        sample_frequency=cfg.sample_rate_hz,
        num_mel_bins=cfg.num_mel_bins,
        frame_length=cfg.frame_length_ms,
        frame_shift=cfg.frame_shift_ms,
        htk_compat=True,
        use_energy=False,
        window_type="hanning",
        dither=0.0,
    )
    return (fb - cfg.fbank_mean) / cfg.fbank_std


def audio_to_windows(wave: np.ndarray, cfg: AudioCfg) -> tuple[torch.Tensor, torch.Tensor]:
    """16 kHz mono -> (fbank windows [W, T, M] each padded with zeros to a full window,
    valid frame counts [W])."""
    total = window_frames(cfg)
    mels, frames = [], []
    for chunk in split_windows(wave, cfg):
        fb = log_mel(chunk, cfg)[:total]
        n = fb.shape[0]
        frames.append(n)
        if n < total:
            fb = torch.nn.functional.pad(fb, (0, 0, 0, total - n))
        mels.append(fb)
    return torch.stack(mels), torch.tensor(frames, dtype=torch.long)


def windows_for_seconds(seconds: float, cfg: AudioCfg) -> int:
    return max(1, math.ceil(seconds / cfg.window_seconds))


def busiest_excerpts(
    fbank: torch.Tensor, frames: torch.Tensor, size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each window of ``fbank`` [W, T, M] (``frames`` valid frames each): its ``size``-frame
    excerpt centred on its loudest frame (mean log-mel), placed at the start of a zero window
    like a training excerpt; a window shorter than ``size`` is kept whole."""
    out = torch.zeros_like(fbank)
    kept = torch.zeros_like(frames)
    for w in range(fbank.shape[0]):
        n = int(frames[w])
        k = min(n, size)
        peak = int(fbank[w, :n].float().mean(dim=1).argmax())  # the same peak in bf16
        start = min(max(0, peak - k // 2), n - k)
        out[w, :k] = fbank[w, start : start + k]
        kept[w] = k
    return out, kept

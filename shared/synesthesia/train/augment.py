"""Batched augmentation on model-input tensors (the serving preprocessing is applied first)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def augment_images(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """[B, 3, S, S] in [0, 1] -> random zoom/shift crop, horizontal flip, colour jitter."""
    b = x.shape[0]
    scale = _uniform(gen, 0.7, 1.0, b)
    flip = torch.where(torch.rand(b, generator=gen) < 0.5, -1.0, 1.0)
    tx = _uniform(gen, -1, 1, b) * (1 - scale + 0.125)
    ty = _uniform(gen, -1, 1, b) * (1 - scale + 0.125)
    return jitter_colours(_crop(x, scale * flip, scale, tx, ty, None), gen)


def random_resized_crop(
    x: torch.Tensor, gen: torch.Generator, size: int, area: tuple[float, float]
) -> torch.Tensor:
    """[B, 3, R, R] photos in [0, 1] -> [B, 3, size, size]: a crop of a random share ``area``
    of the picture and aspect ratio 3/4 to 4/3 at a random place, flipped half the time, then
    colour jitter (the usual ImageNet training view)."""
    b = x.shape[0]
    a = _uniform(gen, area[0], area[1], b)
    ratio = torch.exp(_uniform(gen, math.log(3 / 4), math.log(4 / 3), b))
    sx, sy = (a * ratio).sqrt().clamp(max=1.0), (a / ratio).sqrt().clamp(max=1.0)
    flip = torch.where(torch.rand(b, generator=gen) < 0.5, -1.0, 1.0)
    tx, ty = _uniform(gen, -1, 1, b) * (1 - sx), _uniform(gen, -1, 1, b) * (1 - sy)
    return jitter_colours(_crop(x, sx * flip, sy, tx, ty, size), gen)


def cut_mix(
    x: torch.Tensor, targets: torch.Tensor, gen: torch.Generator, prob: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """CutMix: with ``prob``, a picture gets a rectangle (20-50 % of its area, at a random
    place) of another picture of the batch pasted in, and its targets become the two pictures'
    targets weighed by the areas they show."""
    b, _, h, w = x.shape
    chosen = torch.nonzero(torch.rand(b, generator=gen) < prob)[:, 0]
    if not len(chosen):
        return x, targets
    source, given = x, targets  # patches come from the unmixed pictures
    x, targets = x.clone(), targets.clone()
    other = torch.randint(0, b, (len(chosen),), generator=gen)
    area = _uniform(gen, 0.2, 0.5, len(chosen))
    for i, j, a in zip(chosen.tolist(), other.tolist(), area.tolist(), strict=True):
        bh, bw = max(1, round(h * math.sqrt(a))), max(1, round(w * math.sqrt(a)))
        top = int(torch.randint(0, h - bh + 1, (1,), generator=gen))
        left = int(torch.randint(0, w - bw + 1, (1,), generator=gen))
        x[i, :, top : top + bh, left : left + bw] = source[j, :, top : top + bh, left : left + bw]
        share = bh * bw / (h * w)
        targets[i] = (1 - share) * given[i] + share * given[j]
    return x, targets


def _uniform(gen: torch.Generator, lo: float, hi: float, n: int) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def _crop(
    x: torch.Tensor, sx: torch.Tensor, sy: torch.Tensor, tx: torch.Tensor, ty: torch.Tensor,
    size: int | None,
) -> torch.Tensor:  # fmt: skip
    b, c, h, w = x.shape
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = sx, sy
    theta[:, 0, 2], theta[:, 1, 2] = tx, ty
    out = [b, c, size or h, size or w]
    grid = F.affine_grid(theta, out, align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def jitter_colours(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Saturation (10 % grey), contrast and brightness jitter; clamped to [0, 1]."""
    b = x.shape[0]
    grey = x.mean(dim=1, keepdim=True)
    sat = _uniform(gen, 0.6, 1.4, b)[:, None, None, None]
    sat = torch.where(torch.rand(b, 1, 1, 1, generator=gen) < 0.1, torch.zeros_like(sat), sat)
    x = grey + (x - grey) * sat
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = mean + (x - mean) * _uniform(gen, 0.7, 1.3, b)[:, None, None, None]
    x = x * _uniform(gen, 0.75, 1.25, b)[:, None, None, None]
    return x.clamp(0.0, 1.0)


def normalise_images(
    x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]
) -> torch.Tensor:
    """Same arithmetic as ``preprocess.pixels_to_tensor`` on a channels-first batch."""
    m = torch.tensor(mean, dtype=torch.float32)[None, :, None, None]
    s = torch.tensor(std, dtype=torch.float32)[None, :, None, None]
    return (x - m) / s


def _warp(
    fb: torch.Tensor, frames: torch.Tensor, gen: torch.Generator, warp: float
) -> tuple[torch.Tensor, torch.Tensor]:
    b, t, m = fb.shape
    out, frames = fb.clone(), frames.clone()
    max_shift = max(1, round(warp * m / 4))
    for i in range(b):
        n = int(frames[i])
        if n > 8 and float(torch.rand(1, generator=gen)) < 0.5:
            rate = 1 + warp * (2 * float(torch.rand(1, generator=gen)) - 1)
            new = max(8, min(t, round(n * rate)))
            part = F.interpolate(fb[i, :n].T[None], size=new, mode="linear", align_corners=False)
            out[i] = 0.0
            out[i, :new] = part[0].T
            frames[i] = new
        if float(torch.rand(1, generator=gen)) < 0.5:
            k = int(torch.randint(-max_shift, max_shift + 1, (1,), generator=gen))
            if k > 0:  # up: the lowest bins repeat the edge
                out[i, :, k:] = out[i, :, :-k].clone()
                out[i, :, :k] = out[i, :, k : k + 1]
            elif k < 0:
                out[i, :, :k] = out[i, :, -k:].clone()
                out[i, :, k:] = out[i, :, k - 1 : k]
    return out, frames


def augment_fbank(
    fb: torch.Tensor,
    frames: torch.Tensor,
    targets: torch.Tensor,
    gen: torch.Generator,
    fbank_std: float,
    mix_prob: float = 0.5,
    warp: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Normalised log-mel windows [B, T, M] (+ valid frames [B], soft targets [B, K]) ->
    (``warp`` > 0: time stretch by up to ±warp and a pitch-like shift of up to ±warp×M/4 mel
    bins, each half the time), time shift, gain, mixing of two clips (in the power domain),
    time/frequency masks."""
    b, t, m = fb.shape
    fb = fb.clone()
    if warp > 0:
        fb, frames = _warp(fb, frames, gen, warp)
    # time shift of the valid part (circular), half the time
    for i in range(b):
        n = int(frames[i])
        if n > 8 and float(torch.rand(1, generator=gen)) < 0.5:
            k = int(torch.randint(0, n, (1,), generator=gen))
            fb[i, :n] = torch.roll(fb[i, :n], k, dims=0)
    # gain of +-6 dB: a shift of the log power, in normalised units
    gain_db = (torch.rand(b, generator=gen) * 12 - 6)[:, None, None]
    fb = fb + gain_db * (math.log(10) / 10) / fbank_std
    # mixing: log(e^a + r e^b), soft targets weighted by r/(1+r)
    mix = torch.rand(b, generator=gen) < mix_prob
    partner = torch.randperm(b, generator=gen)
    r = 0.15 + 0.85 * torch.rand(b, generator=gen)
    if bool(mix.any()):
        a, other = fb * fbank_std, fb[partner] * fbank_std
        mixed = torch.logaddexp(a, other + torch.log(r)[:, None, None]) / fbank_std
        fb = torch.where(mix[:, None, None], mixed, fb)
        w = (r / (1 + r) * mix.float())[:, None]
        targets = (1 - w) * targets + w * targets[partner]
        frames = torch.where(mix, torch.maximum(frames, frames[partner]), frames)
    # SpecAugment-style masks
    for i in range(b):
        for _ in range(2):
            w_t = int(torch.randint(0, 40, (1,), generator=gen))
            s_t = int(torch.randint(0, max(1, t - w_t), (1,), generator=gen))
            fb[i, s_t : s_t + w_t] = 0.0
            w_f = int(torch.randint(0, 8, (1,), generator=gen))
            s_f = int(torch.randint(0, max(1, m - w_f), (1,), generator=gen))
            fb[i, :, s_f : s_f + w_f] = 0.0
    return fb, frames, targets

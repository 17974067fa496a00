"""Training sets as tensors + the text bank each is bound to."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from synesthesia.models.minilm.config import AudioCfg, ImageCfg
from synesthesia.models.minilm.model import SynesthesiaMiniLM
from synesthesia.models.minilm.preprocess import image_to_tensor, log_mel
from synesthesia.train import data
from synesthesia.train.texts import (
    AUDIO_TEMPLATES,
    ESC10_TO_ESC50,
    IMAGE_TEMPLATES,
    SOUND_DESCRIPTIONS,
    ClassBank,
    build_bank,
    caption_name,
)

CIFAR_NAMES = {
    "airplane": ["airplane", "plane"], "automobile": ["automobile", "car"], "bird": ["bird"],
    "cat": ["cat"], "deer": ["deer"], "dog": ["dog"], "frog": ["frog"], "horse": ["horse"],
    "ship": ["ship", "boat"], "truck": ["truck"],
}  # fmt: skip


@dataclass
class TrainSet:
    bank: ClassBank
    labels: torch.Tensor  # [N] class index into the bank
    weights: torch.Tensor  # [N] sampling weight (class-balanced)
    pixels: torch.Tensor | None = None  # images: uint8 [N, S, S, 3]
    fbanks: list[torch.Tensor] | None = None  # audio: normalised log-mel [T_i, M] per clip


def balanced_weights(
    labels: np.ndarray, alpha: float, extra: np.ndarray | None = None
) -> torch.Tensor:
    counts = np.bincount(labels)
    w = counts[labels].astype(np.float64) ** -alpha
    if extra is not None:
        w = w * extra
    return torch.from_numpy(w / w.sum())


def _subset(n: int, limit: int | None, seed: int) -> np.ndarray:
    idx = np.arange(n)
    if limit is not None and limit < n:
        idx = np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))
    return idx


def image_set(
    model: SynesthesiaMiniLM, cfg: ImageCfg, tux_share: float, limit: int | None, seed: int
) -> TrainSet:
    x, y = data.load_cifar("train")
    keep = _subset(len(y), limit, seed)
    x, y = x[keep], y[keep]
    classes = {k: list(v) for k, v in CIFAR_NAMES.items()}
    captions: dict[str, list[str]] = {}
    synonyms = {n: k for k, names in CIFAR_NAMES.items() for n in names}
    tux_px, tux_lab = [], []
    mean, std = np.asarray(cfg.mean), np.asarray(cfg.std)
    for item in data.tux_items(held_out=False):
        name = caption_name(item.caption)
        key = synonyms.get(name, name)
        classes.setdefault(key, [name])
        captions.setdefault(key, []).append(item.caption)
        t = image_to_tensor(data.load_picture(item.image), cfg).numpy()  # serving preprocessing
        px = np.rint((np.moveaxis(t, 0, -1) * std + mean) * 255).clip(0, 255).astype(np.uint8)
        tux_px.append(px)
        tux_lab.append(list(classes).index(key))
    bank = build_bank(model, classes, IMAGE_TEMPLATES, captions)
    labels = np.concatenate([y, np.asarray(tux_lab, dtype=np.int64)])
    source = np.concatenate([np.zeros(len(y)), np.ones(len(tux_lab))])
    # CIFAR is balanced; Tux Paint pictures get ``tux_share`` of the draws in total
    share = np.where(source == 1, tux_share / max(1, len(tux_lab)), (1 - tux_share) / len(y))
    pixels = torch.from_numpy(np.concatenate([x, np.stack(tux_px)]))
    return TrainSet(bank, torch.from_numpy(labels), torch.from_numpy(share / share.sum()), pixels)


def audio_key(clip: data.Clip, esc50_names: set[str]) -> tuple[str, str]:
    """(bank key, name) of a training clip."""
    if clip.source == "esc10":
        return ESC10_TO_ESC50[clip.label], clip.label
    if clip.source == "esc50":
        return clip.label, clip.label
    name = caption_name(clip.caption)
    return (name if name in esc50_names else f"{clip.source}:{name}"), name


def esc50_names() -> list[str]:
    rows = data.esc50_clips("train") + data.esc50_clips("eval")
    return sorted({c.label for c in rows})


def audio_set(
    model: SynesthesiaMiniLM,
    cfg: AudioCfg,
    alpha: float,
    limit: int | None,
    seed: int,
    describe: bool = False,
) -> TrainSet:
    clips = data.train_audio_clips()
    clips = [clips[i] for i in _subset(len(clips), limit, seed)]
    names50 = set(esc50_names())
    classes: dict[str, list[str]] = {n: [n] for n in sorted(names50)}
    for e10, e50 in ESC10_TO_ESC50.items():
        if e10 != e50:
            classes[e50].append(e10)
    captions: dict[str, list[str]] = {}
    labels, fbanks = [], []
    for clip in clips:
        key, name = audio_key(clip, names50)
        classes.setdefault(key, [name])
        if clip.caption:
            captions.setdefault(key, []).append(clip.caption)
        labels.append(list(classes).index(key))
        fbanks.append(log_mel(data.load_wave(clip.path, cfg.sample_rate_hz), cfg))
    if describe:
        for names in classes.values():
            names += [d for n in list(names) for d in SOUND_DESCRIPTIONS.get(n, [])]
    bank = build_bank(model, classes, AUDIO_TEMPLATES, captions)
    lab = np.asarray(labels, dtype=np.int64)
    return TrainSet(bank, torch.from_numpy(lab), balanced_weights(lab, alpha), fbanks=fbanks)

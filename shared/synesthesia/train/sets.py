"""Training sets as tensors + the text bank each is bound to."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from synesthesia.models.minilm.config import AudioCfg, ImageCfg
from synesthesia.models.minilm.model import SynesthesiaMiniLM
from synesthesia.models.minilm.preprocess import image_to_tensor, log_mel
from synesthesia.train import data
from synesthesia.train.config import Stage
from synesthesia.train.texts import (
    AUDIO_TEMPLATES,
    ESC10_TO_ESC50,
    IMAGE_TEMPLATES,
    PICTURE_OF,
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
class Pictures:
    """Where pictures land under a trained image tower, to bind sounds to them."""

    # [P, D] one unit vector per CIFAR-10 class: the mean of [the class's mean training-image
    # vector, each Tux Paint training drawing captioned with its name or a synonym] (the shipped
    # towers: one drawing each for airplane, deer and frog, weighted like the CIFAR mean)
    centroids: torch.Tensor
    target: torch.Tensor  # [N] CIFAR-10 class a clip's thing belongs to (-1: none)
    anchor: torch.Tensor  # [N, D] the clip's own picture, else its picture class mean (0: none)
    drawings: torch.Tensor  # [Q, D] unit vectors of the Tux Paint training pictures
    own: torch.Tensor  # [N] a Tux Paint sound's own picture among ``drawings`` (-1: none)


@dataclass
class TrainSet:
    bank: ClassBank
    labels: torch.Tensor  # [N] class index into the bank
    weights: torch.Tensor  # [N] sampling weight (class-balanced)
    pixels: torch.Tensor | None = None  # images: uint8 [N, S, S, 3]
    fbanks: list[torch.Tensor] | None = None  # audio: normalised log-mel [T_i, M] per clip
    pictures: Pictures | None = None  # audio: what each clip looks like (binding to pictures)


def _share_others(w: torch.Tensor, clips: list[data.Clip], share: float | None) -> torch.Tensor:
    """Give the clips outside ESC-10/ESC-50 (OpenSFX, Tux Paint: mostly one clip per class)
    ``share`` of the draws in total, the ESC clips the rest (None: leave ``w`` as it is)."""
    other = torch.tensor([c.source not in ("esc10", "esc50") for c in clips])
    if share is None or bool(other.all()) or not bool(other.any()):
        return w
    w = w.clone()
    w[other] *= share / w[other].sum()
    w[~other] *= (1 - share) / w[~other].sum()
    return w


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
    model: SynesthesiaMiniLM,
    cfg: ImageCfg,
    tux_share: float,
    limit: int | None,
    seed: int,
    gallery: bool = False,
) -> TrainSet:
    x, y = data.load_cifar("train")
    keep = _subset(len(y), limit, seed)
    x, y = x[keep], y[keep]
    classes = {k: list(v) for k, v in CIFAR_NAMES.items()}
    captions: dict[str, list[str]] = {}
    synonyms = {n: k for k, names in CIFAR_NAMES.items() for n in names}
    tux_px, tux_lab = [], []
    mean, std = np.asarray(cfg.mean), np.asarray(cfg.std)
    items = data.tux_items(held_out=False) + (data.gallery_pictures() if gallery else [])
    for item in items:
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
    stage: Stage,
    seed: int,
    pictures: SynesthesiaMiniLM | None = None,
) -> TrainSet:
    clips = data.train_audio_clips()
    clips = [clips[i] for i in _subset(len(clips), stage.limit, seed)]
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
    if stage.describe:
        for names in classes.values():
            names += [d for n in list(names) for d in SOUND_DESCRIPTIONS.get(n, [])]
    bank = build_bank(model, classes, AUDIO_TEMPLATES, captions)
    lab = np.asarray(labels, dtype=np.int64)
    return TrainSet(
        bank,
        torch.from_numpy(lab),
        _share_others(balanced_weights(lab, stage.balance_alpha), clips, stage.other_share),
        fbanks=fbanks,
        pictures=picture_anchors(pictures, clips) if pictures is not None else None,
    )


@torch.no_grad()  # (not inference_mode: the vectors take part in the training loss)
def picture_anchors(pictures: SynesthesiaMiniLM, clips: list[data.Clip]) -> Pictures:
    """Binds each clip to the pictures of its thing under the image tower ``pictures``: a Tux
    Paint sound to its own picture, a clip of a class that has pictures (``PICTURE_OF``, CIFAR-10
    names and synonyms, Tux Paint captions) to that class's mean picture vector. A class mean
    averages its group's entries: for a CIFAR-10 class, its mean image vector (one entry) and
    the Tux Paint drawings captioned with its name (one entry each)."""
    from synesthesia.train.evaluate import image_vectors

    icfg = pictures.cfg.image
    x, y = data.load_cifar("train")
    keep = np.arange(len(y)) % 2 == 0  # 25,000 pictures are plenty for ten means
    vecs = image_vectors(pictures, x[keep])
    groups: dict[str, list[torch.Tensor]] = {}
    cifar: dict[str, int] = {}
    for k, name in enumerate(data.CIFAR_CLASSES):
        groups[name] = [vecs[torch.from_numpy(y[keep] == k)].mean(0)]
        for syn in (name, *CIFAR_NAMES[name]):
            groups.setdefault(syn, groups[name])
            cifar[syn] = k
    own: dict[Path, torch.Tensor] = {}
    drawings: list[torch.Tensor] = []
    own_row: dict[Path, int] = {}
    mean, std = np.asarray(icfg.mean), np.asarray(icfg.std)
    for item in data.tux_items(held_out=False):
        t = image_to_tensor(data.load_picture(item.image), icfg)
        px = np.rint((np.moveaxis(t.numpy(), 0, -1) * std + mean) * 255).clip(0, 255)
        v = image_vectors(pictures, px.astype(np.uint8)[None])[0]  # the training-time rounding
        groups.setdefault(caption_name(item.caption), []).append(v)
        if item.audio is not None:
            own[item.audio] = v
            own_row[item.audio] = len(drawings)
        drawings.append(F.normalize(v, dim=-1))
    centroids = {k: F.normalize(torch.stack(v).mean(0), dim=-1) for k, v in groups.items()}
    anchor = torch.zeros(len(clips), vecs.shape[1])
    target = torch.full((len(clips),), -1, dtype=torch.long)
    for i, clip in enumerate(clips):
        name = caption_name(clip.caption) if clip.caption else clip.label
        want = PICTURE_OF.get(name, PICTURE_OF.get(clip.label, name))
        if clip.path in own:
            anchor[i] = F.normalize(own[clip.path], dim=-1)
        elif want in centroids:
            anchor[i] = centroids[want]
        target[i] = cifar.get(want, -1)
    rows = torch.tensor([own_row.get(c.path, -1) for c in clips], dtype=torch.long)
    cifar_means = torch.stack([centroids[n] for n in data.CIFAR_CLASSES])
    return Pictures(cifar_means, target, anchor, torch.stack(drawings), rows)

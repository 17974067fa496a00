"""Training sets as tensors + the text bank each is bound to."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from synesthesia.models.minilm.config import AudioCfg, ImageCfg
from synesthesia.models.minilm.model import SynesthesiaMiniLM
from synesthesia.models.minilm.preprocess import image_to_tensor, log_mel
from synesthesia.train import clipart, data
from synesthesia.train.config import Stage
from synesthesia.train.openworld import Photo, imagenet_photos, split_wnids
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
from synesthesia.train.wordnet import (
    class_texts,
    distractors,
    hypernym_chain,
    load_nouns,
    noun_senses,
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
    # images: uint8 [P, R, R, 3] real photos (R > S: random-resized crops), items N.. N+P-1
    photos: torch.Tensor | None = None
    # [N] a second class an item also belongs to, half and half (-1: none): a photo of a
    # "bullfrog" is also a "frog"
    parents: torch.Tensor | None = None

    def targets(self, idx: torch.Tensor) -> torch.Tensor:
        """[B, K] soft class targets of items ``idx``."""
        k = len(self.bank.keys)
        out = F.one_hot(self.labels[idx], k).float()
        if self.parents is not None:
            par = self.parents[idx]
            has = par >= 0
            out[has] *= 0.5
            out[has] += 0.5 * F.one_hot(par[has], k).float()
        return out

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


def image_set(model: SynesthesiaMiniLM, cfg: ImageCfg, stage: Stage, seed: int) -> TrainSet:
    """CIFAR-10 train (+ Tux Paint pictures, ``tux_share`` of the draws; + the gallery) and,
    with ``stage.imagenet``, the ImageNet sample's photos of training classes."""
    x, y = data.load_cifar("train")
    keep = _subset(len(y), stage.limit, seed)
    x, y = resize_pixels(x[keep], cfg.image_size), y[keep]
    classes = {k: list(v) for k, v in CIFAR_NAMES.items()}
    captions: dict[str, list[str]] = {}
    synonyms = {n: k for k, names in CIFAR_NAMES.items() for n in names}
    banned = held_out_names(stage)
    tux_px, tux_lab = [], []
    items = data.tux_items(held_out=False) + (data.gallery_pictures() if stage.gallery else [])
    for item in items:
        name = caption_name(item.caption)
        if name in banned:  # a picture named like an unseen (eval / validation) class
            continue
        key = synonyms.get(name, name)
        classes.setdefault(key, [name])
        captions.setdefault(key, []).append(item.caption)
        tux_px.append(picture_pixels(item.image, cfg))
        tux_lab.append(list(classes).index(key))
    art_px: list[np.ndarray] = []
    art_lab: list[int] = []
    if stage.clipart_share:
        art_px, art_lab = clipart_set(classes, captions, synonyms, banned, cfg)
    photo_px, photo_lab, photo_parent = [], [], []
    if stage.imagenet:
        known = {n.lower(): k for k, names in classes.items() for n in names}
        for photo, names, caps, ancestors in imagenet_classes(stage, seed, banned):
            # a class the bank has under a name (a gallery "goldfish") is that class; a kind of
            # a class in the bank ("bullfrog": a frog) is also half that class, never its rival
            same = [known[n.lower()] for n in names if n.lower() in known]
            key = same[0] if same else f"imagenet:{photo.wnid}"
            classes[key] = list(dict.fromkeys(classes.get(key, []) + names))
            captions[key] = captions.get(key, []) + caps
            parent = next((known[a.lower()] for a in ancestors if a.lower() in known), None)
            photo_px.append(photo_pixels(photo, 2 * cfg.image_size))
            photo_lab.append(list(classes).index(key))
            photo_parent.append(-1 if parent in (None, key) else list(classes).index(parent))
    if stage.distractors:
        add_distractors(classes, captions, stage.distractors, banned, seed)
    bank = build_bank(model, classes, IMAGE_TEMPLATES, captions)
    labels = np.concatenate([y, np.asarray(tux_lab + art_lab + photo_lab, dtype=np.int64)])
    # CIFAR is balanced; Tux Paint pictures get ``tux_share`` of the draws in total, clip art
    # ``clipart_share`` (class-balanced), photos ``imagenet_share``
    n_tux, n_photo = len(tux_lab), len(photo_lab)
    photo_share = stage.imagenet_share if n_photo else 0.0
    art_share = stage.clipart_share if art_lab else 0.0
    art_w = np.bincount(art_lab)[art_lab] ** -stage.balance_alpha if art_lab else np.zeros(0)
    share = np.concatenate([
        np.full(len(y), (1 - stage.tux_share - art_share - photo_share) / len(y)),
        np.full(n_tux, stage.tux_share / max(1, n_tux)),
        art_share * art_w / max(art_w.sum(), 1e-12),
        np.full(n_photo, photo_share / max(1, n_photo)),
    ])  # fmt: skip
    pixels = torch.from_numpy(np.concatenate([x, np.stack(tux_px + art_px)]))
    photos = torch.from_numpy(np.stack(photo_px)) if photo_px else None
    parents = np.full(len(labels), -1, dtype=np.int64)
    parents[len(labels) - n_photo :] = photo_parent
    return TrainSet(
        bank, torch.from_numpy(labels), torch.from_numpy(share / share.sum()), pixels,
        photos=photos, parents=torch.from_numpy(parents) if n_photo else None,
    )  # fmt: skip


def clipart_set(
    classes: dict[str, list[str]], captions: dict[str, list[str]], synonyms: dict[str, str],
    banned: set[str], cfg: ImageCfg,
) -> tuple[list[np.ndarray], list[int]]:  # fmt: skip
    """Open Clip Art's usable drawings (``clipart.training_pictures``) added to the bank's
    ``classes`` and ``captions`` (a name the bank has, e.g. "dog" or "truck", is that class):
    their pixels (serving's preprocessing, uint8 at the model's size) and class indices."""
    px, lab = [], []
    known = {n.lower(): k for k, names in classes.items() for n in names}
    for item, name, caps in clipart.training_pictures(clipart.obtain(data.cache_dir()), banned):
        key = known.get(name, synonyms.get(name, f"clipart:{name}"))
        classes.setdefault(key, [name])
        captions.setdefault(key, []).extend(c for c in caps if c not in captions[key])
        px.append(picture_pixels(item.path, cfg))
        lab.append(list(classes).index(key))
    return px, lab


def add_distractors(
    classes: dict[str, list[str]], captions: dict[str, list[str]], count: int, banned: set[str],
    seed: int,
) -> None:  # fmt: skip
    """Append ``count`` picture-less classes (``wordnet.distractors``) to the bank's classes,
    each written in four of the image templates (drawn per word). Kept clear of them: every
    class of the ImageNet sample (trained on or unseen) and every sense of a bank name."""
    senses = noun_senses()
    clear = {w[1:] for w in split_wnids("train") + split_wnids("eval")}
    names = {n.lower() for group in classes.values() for n in group}
    for name in names:
        clear |= set(senses.get(name, ([], 0))[0])
    rng = np.random.default_rng(seed)
    for off, word in distractors(load_nouns(), clear, banned | names, count, seed):
        key = f"distractor:{off}"
        classes[key] = []
        pick = rng.choice(len(IMAGE_TEMPLATES), 4, replace=False)
        captions[key] = [IMAGE_TEMPLATES[int(i)].format(word) for i in pick]


def resize_pixels(x: np.ndarray, size: int, chunk: int = 2000) -> np.ndarray:
    """uint8 [N, s, s, 3] -> [N, size, size, 3], bicubic (as serving resizes a small picture);
    unchanged when ``s == size``."""
    if x.shape[1] == size:
        return x
    out = []
    for i in range(0, len(x), chunk):
        t = torch.from_numpy(x[i : i + chunk]).permute(0, 3, 1, 2).float()
        t = F.interpolate(t, size=size, mode="bicubic", align_corners=False)
        out.append(t.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy())
    return np.concatenate(out)


def picture_pixels(path: Path, cfg: ImageCfg) -> np.ndarray:
    """uint8 [size, size, 3]: a picture as serving sees it (``image_to_tensor``'s resize and
    crop), at the model's size, back in 0-255."""
    t = image_to_tensor(data.load_picture(path), cfg).numpy()
    mean, std = np.asarray(cfg.mean), np.asarray(cfg.std)
    return np.rint((np.moveaxis(t, 0, -1) * std + mean) * 255).clip(0, 255).astype(np.uint8)


def photo_pixels(photo: Photo, side: int) -> np.ndarray:
    """uint8 [side, side, 3]: serving's view of a photo (shorter side resized, centre crop) at
    ``side`` px, for random-resized crops down to the model's size."""
    c = dataclasses.replace(ImageCfg(), image_size=side, mean=(0.0,) * 3, std=(1.0,) * 3)
    t = image_to_tensor(data.load_picture(photo.path), c).numpy()
    return np.rint(np.moveaxis(t, 0, -1) * 255).clip(0, 255).astype(np.uint8)


def held_out_names(stage: Stage) -> set[str]:
    """Lower-case names never trained on (empty unless the stage trains on ImageNet photos, has
    ``unseen_out`` or draws clip art): the manifest labels of the unseen classes (eval, and
    validation when training on ``fit``) and, with ``wordnet``, ``unseen_out`` or clip art,
    all their WordNet synonyms."""
    everywhere = stage.unseen_out or stage.clipart_share > 0
    if not (stage.imagenet or everywhere):
        return set()
    unseen = set(split_wnids("eval"))
    if stage.imagenet == "fit":
        unseen |= set(split_wnids("val"))
    names = {p.label.lower() for p in imagenet_photos() if p.wnid in unseen}
    if stage.wordnet or everywhere:
        nouns = load_nouns()
        names |= {w.lower() for wnid in unseen for w in nouns[wnid[1:]].words}
    return names


def imagenet_classes(
    stage: Stage, seed: int, banned: set[str]
) -> list[tuple[Photo, list[str], list[str], list[str]]]:
    """(photo, names, captions, ancestors) of each training class of ``stage.imagenet``; the
    first ``imagenet_concepts`` of a seeded order. Names: the manifest label (+ WordNet
    synonyms); captions: WordNet's gloss and hypernyms (``wordnet.class_texts``); ancestors:
    the words of its hypernyms, nearest first (without WordNet: none)."""
    assert stage.imagenet is not None
    wanted = split_wnids(stage.imagenet)
    order = np.random.default_rng(seed).permutation(len(wanted))
    wanted = [wanted[i] for i in order[: stage.imagenet_concepts]]
    by_wnid = {p.wnid: p for p in imagenet_photos()}
    nouns = load_nouns() if stage.wordnet else None
    cifar = {n for names in CIFAR_NAMES.values() for n in names}
    out = []
    for wnid in sorted(wanted):
        photo = by_wnid[wnid]
        names = [photo.label] if photo.label.lower() not in banned else []
        caps: list[str] = []
        ancestors: list[str] = []
        if nouns is not None:
            more, caps = class_texts(nouns, wnid, banned)
            names += [n for n in more if n.lower() != photo.label.lower()]
            chain = hypernym_chain(nouns, wnid[1:], 12)
            ancestors = [w for off in chain for w in nouns[off].words if w.lower() not in banned]
        names = [n for n in names if n.lower() not in cifar]  # ("plane", the tool)
        if names:  # (a label shared with an unseen class, e.g. "crane", and no other name)
            out.append((photo, names, caps, ancestors))
    return out


def audio_key(clip: data.Clip, esc50_names: set[str]) -> tuple[str, str]:
    """(bank key, name) of a training clip."""
    if clip.source == "esc10":
        return ESC10_TO_ESC50[clip.label], clip.label
    if clip.source == "esc50":
        return clip.label, clip.label
    name = caption_name(clip.caption)
    return (name if name in esc50_names else f"{clip.source}:{name}"), name


def seen_clips(clips: list[data.Clip], names50: set[str], banned: set[str]) -> list[data.Clip]:
    """The clips without a Tux Paint / OpenSFX sound named like an unseen class ("A lion
    roars."); ESC's own classes keep their names (see ``Stage.unseen_out``)."""
    return [
        c
        for c in clips
        if c.source in ("esc10", "esc50") or audio_key(c, names50)[1].lower() not in banned
    ]


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
    banned = held_out_names(stage)
    clips = seen_clips(clips, names50, banned)
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
        pictures=picture_anchors(pictures, clips, banned) if pictures is not None else None,
    )


@torch.no_grad()  # (not inference_mode: the vectors take part in the training loss)
def picture_anchors(
    pictures: SynesthesiaMiniLM,
    clips: list[data.Clip],
    banned: frozenset[str] | set[str] = frozenset(),
) -> Pictures:
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
    for item in data.tux_items(held_out=False):
        if caption_name(item.caption).lower() in banned:  # a drawing of an unseen class
            continue
        px = picture_pixels(item.image, icfg)
        v = image_vectors(pictures, px[None])[0]  # the training-time rounding
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

"""The metric table of ``synesthesia eval``: first the open-world figures (``openworld``: real
photos and sounds of things never trained on), then zero-shot CIFAR-10 / ESC-10 / ESC-50,
bark->photo retrieval over the CIFAR-10 test set, and text parity with all-MiniLM-L6-v2."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from synesthesia.models.minilm.model import SynesthesiaMiniLM
from synesthesia.models.minilm.preprocess import audio_to_windows
from synesthesia.train import data
from synesthesia.train.augment import normalise_images
from synesthesia.train.sets import CIFAR_NAMES, esc50_names
from synesthesia.train.texts import AUDIO_TEMPLATES, ESC10_TO_ESC50, IMAGE_TEMPLATES, build_bank

# Sound classes whose pictures are in CIFAR-10 (ESC-50 names, ESC-10 labels, Tux Paint labels).
SOUND_TO_PICTURE = {
    "dog": "dog", "dog bark": "dog", "cat": "cat", "blackcat": "cat", "rooster": "bird",
    "hen": "bird", "crow": "bird", "chirping birds": "bird", "frog": "frog",
    "airplane": "airplane", "car horn": "automobile", "horse": "horse",
}  # fmt: skip


@dataclass
class Report:
    metrics: dict[str, float] = field(default_factory=dict)
    per_class: dict[str, float] = field(default_factory=dict)  # bark->photo P@10 per picture class
    counts: dict[str, int] = field(default_factory=dict)
    open_world: dict[str, float] = field(default_factory=dict)
    # sound -> real photo per ESC class: mrr, r@10, their chance values, clips, photos
    sound_photo: dict[str, dict[str, float]] = field(default_factory=dict)

    def table(self) -> str:
        lines = []
        if self.open_world:
            lines += ["| open world | value |", "|---|---|"]
            lines += [f"| {k} | {v:.4f} |" for k, v in self.open_world.items()]
            lines += ["", "| sound->photo ESC class | clips | photos | MRR | chance | R@10 | "
                      "chance |", "|---|---|---|---|---|---|---|"]  # fmt: skip
            lines += [f"| {c} | {v['clips']:.0f} | {v.get('photos', 0):.0f} | {v['mrr']:.3f} | "
                      f"{v['chance mrr']:.3f} | {v['r@10']:.3f} | {v['chance r@10']:.3f} |"
                      for c, v in self.sound_photo.items()]  # fmt: skip
            lines.append("")
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.4f} |" for k, v in self.metrics.items()]
        lines += ["", "| bark->photo class | clips | P@10 |", "|---|---|---|"]
        lines += [f"| {k} | {self.counts[k]} | {v:.3f} |" for k, v in self.per_class.items()]
        return "\n".join(lines)


class InPrecision:
    """The model with its weights in ``dtype``: floating inputs are cast to it, vectors come
    back float32 and unit-norm, as the serving path (``precision: bf16``) computes them. Every
    other attribute is the wrapped model's."""

    def __init__(self, model: SynesthesiaMiniLM, dtype: torch.dtype) -> None:
        self.model = model.to(dtype)
        self.dtype = dtype

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def _out(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x.float(), dim=-1)

    def encode_text(self, input_ids: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        return self._out(self.model.encode_text(input_ids, valid))

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return self._out(self.model.encode_image(pixels.to(self.dtype)))

    def encode_audio(self, fbank: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        return self._out(self.model.encode_audio(fbank.to(self.dtype), frames))


@torch.inference_mode()
def image_vectors(model: SynesthesiaMiniLM, x: np.ndarray, batch: int = 500) -> torch.Tensor:
    cfg = model.cfg.image
    out = []
    for i in range(0, len(x), batch):
        px = torch.from_numpy(x[i : i + batch]).permute(0, 3, 1, 2).float() / 255.0
        if px.shape[-1] != cfg.image_size:  # as serving resizes (bicubic) to the model's size
            px = F.interpolate(px, size=cfg.image_size, mode="bicubic", align_corners=False)
            px = px.clamp(0.0, 1.0)
        out.append(model.encode_image(normalise_images(px, cfg.mean, cfg.std)))
    return torch.cat(out)


@torch.inference_mode()
def audio_vectors(model: SynesthesiaMiniLM, clips: list[data.Clip]) -> torch.Tensor:
    """The serving path: windows -> per-window vectors -> mean -> re-normalise."""
    cfg = model.cfg.audio
    out = []
    for clip in clips:
        fb, frames = audio_to_windows(data.load_wave(clip.path, cfg.sample_rate_hz), cfg)
        out.append(model.encode_audio(fb, frames).mean(0))
    return torch.nn.functional.normalize(torch.stack(out), dim=-1)


def zero_shot(vectors: torch.Tensor, labels: list[str], classes: dict[str, list[str]],
              model: SynesthesiaMiniLM, templates: tuple[str, ...]) -> float:  # fmt: skip
    bank = build_bank(model, classes, templates)
    pred = (vectors @ bank.prototypes().T).argmax(1)
    truth = torch.tensor([bank.keys.index(k) for k in labels])
    return float((pred == truth).float().mean())


def text_parity(model: SynesthesiaMiniLM) -> float:
    """Max |difference| between the model's text vectors and sentence-transformers'."""
    from sentence_transformers import SentenceTransformer

    from synesthesia.models.minilm.weights import minilm_dir
    from synesthesia.train.texts import embed_texts

    sentences = ["a barking dog", "A photo of a cat.", "the sound of rain on a roof",
                 "Ein Hund bellt laut.", "x" * 40 + " long " * 200]  # fmt: skip
    ref = SentenceTransformer(str(minilm_dir()), device="cpu").encode(sentences)
    ours = embed_texts(model, [s for s in sentences], batch=2)
    return float(np.abs(ours.numpy() - ref).max())


def evaluate(
    model: SynesthesiaMiniLM,
    limit: int | None = None,
    parity: bool = True,
    open_world: str | None = "eval",
) -> Report:
    """``open_world``: the ImageNet sample's split whose photos are scored as unseen classes
    (``eval``; ``val``, the validation classes carved from ``train``, for design choices;
    None: no open-world figures)."""
    rep = Report()
    mods = {m for m in ("image", "audio") if getattr(model, m) is not None}
    pics: torch.Tensor | None = None
    pic_labels: np.ndarray | None = None
    if "image" in mods:
        x, y = data.load_cifar("test")
        if limit:
            keep = np.arange(len(y)) % max(1, len(y) // limit) == 0
            x, y = x[keep], y[keep]
        t = time.perf_counter()
        pics = image_vectors(model, x)
        rep.metrics["image ms/item (batched, this CPU)"] = 1000 * (time.perf_counter() - t) / len(y)
        pic_labels = y
        names = [data.CIFAR_CLASSES[i] for i in y]
        rep.metrics["CIFAR-10 test zero-shot top-1"] = zero_shot(
            pics, names, {k: list(v) for k, v in CIFAR_NAMES.items()}, model, IMAGE_TEMPLATES
        )
    if "audio" in mods:
        e10 = data.esc10_clips("eval")[:limit]
        t = time.perf_counter()
        v10 = audio_vectors(model, e10)
        rep.metrics["audio ms/clip (5 s, this CPU)"] = 1000 * (time.perf_counter() - t) / len(e10)
        classes10 = {c: [c] + ([ESC10_TO_ESC50[c]] if ESC10_TO_ESC50[c] != c else [])
                     for c in ESC10_TO_ESC50}  # fmt: skip
        rep.metrics["ESC-10 fold 5 zero-shot top-1"] = zero_shot(
            v10, [c.label for c in e10], classes10, model, AUDIO_TEMPLATES
        )
        e50 = data.esc50_clips("eval")[:limit]
        v50 = audio_vectors(model, e50)
        rep.metrics["ESC-50 eval zero-shot top-1 (50 classes)"] = zero_shot(
            v50, [c.label for c in e50], {n: [n] for n in esc50_names()}, model, AUDIO_TEMPLATES
        )
        if pics is not None and pic_labels is not None:
            bark_to_photo(model, rep, e10 + e50, torch.cat([v10, v50]), pics, pic_labels)
    if open_world is not None:
        open_world_figures(
            model, rep, open_world, (e10, v10, e50, v50) if "audio" in mods else None
        )
    if parity:
        rep.metrics["text parity max |diff| vs sentence-transformers"] = text_parity(model)
    return rep


def open_world_figures(
    model: SynesthesiaMiniLM,
    rep: Report,
    split: str,
    sounds: tuple[list[data.Clip], torch.Tensor, list[data.Clip], torch.Tensor] | None,
) -> None:
    """``openworld``'s figures into ``rep.open_world`` / ``rep.sound_photo``."""
    from synesthesia.train import openworld as ow

    photos = ow.imagenet_photos()
    vecs = ow.photo_vectors(model, photos) if model.image is not None else None
    if vecs is not None:
        scored = [i for i, p in enumerate(photos) if p.wnid in set(ow.split_wnids(split))]
        labels = ow.label_prototypes(model, [photos[i].label for i in scored])
        m = ow.photo_label_metrics(vecs[scored], labels)
        n = len(scored)
        rep.open_world[f"ImageNet {split} photo->label top-1 ({n}-way)"] = m["top1"]
        rep.open_world[f"ImageNet {split} photo->label top-5 ({n}-way)"] = m["top5"]
        rep.open_world[f"ImageNet {split} words->photo R@1 ({n} photos)"] = m["words_r1"]
    if sounds is None:
        return
    e10, v10, e50, v50 = sounds
    if vecs is not None:
        seen: set[str] = set()
        keep, classes = [], []
        for i, clip in enumerate(e10 + e50):
            key = clip.path.stem.rsplit("-", 1)[0] if clip.source == "esc50" else clip.path.stem
            if key not in seen:  # ESC-10 clips recur in the ESC-50 subset
                seen.add(key)
                keep.append(i)
                classes.append(ESC10_TO_ESC50.get(clip.label, clip.label))
        per = ow.sound_to_photo(
            torch.cat([v10, v50])[keep], classes, vecs, [p.wnid for p in photos]
        )
        rep.sound_photo = per
        if "mean" in per:
            rep.open_world["sound->photo MRR (mean over ESC classes)"] = per["mean"]["mrr"]
            rep.open_world["sound->photo MRR, chance"] = per["mean"]["chance mrr"]
            rep.open_world["sound->photo R@10 (mean over ESC classes)"] = per["mean"]["r@10"]
            rep.open_world["sound->photo R@10, chance"] = per["mean"]["chance r@10"]
    names10 = {c: [c] + ([ESC10_TO_ESC50[c]] if ESC10_TO_ESC50[c] != c else [])
               for c in ESC10_TO_ESC50}  # fmt: skip
    rep.open_world["ESC-10 fold 5 words->sound R@1"] = ow.words_to_sound_r1(
        model, v10, [c.label for c in e10], names10
    )
    rep.open_world["ESC-50 eval words->sound R@1"] = ow.words_to_sound_r1(
        model, v50, [c.label for c in e50], {n: [n] for n in esc50_names()}
    )


@torch.inference_mode()
def gallery_ranks(model: SynesthesiaMiniLM, root: Path) -> dict[str, int]:
    """Each held-out Tux Paint sound queries every picture of the Tux Paint gallery at ``root``
    (the demo's sample gallery, Debian's tuxpaint-stamps-default); the 1-based rank of its own
    picture. Serving preprocessing throughout."""
    from synesthesia.models.minilm.preprocess import image_to_tensor

    pngs = sorted(root.rglob("*.png"))
    pics = torch.cat([
        model.encode_image(
            torch.stack([image_to_tensor(data.load_picture(p), model.cfg.image) for p in chunk])
        )
        for chunk in (pngs[i : i + 256] for i in range(0, len(pngs), 256))
    ])  # fmt: skip
    shared = data.data_root() / "tuxpaint_stamps"
    out = {}
    for item in data.tux_items(held_out=True):
        if item.audio is None:
            continue
        rel = item.image.relative_to(shared)
        own = [i for i, p in enumerate(pngs) if p.relative_to(root) == rel]
        if not own:
            continue
        vec = audio_vectors(model, [data.Clip(item.audio, item.label, "tux")])[0]
        scores = pics @ vec
        out[item.label] = int((scores > scores[own[0]]).sum()) + 1
    return out


def bark_to_photo(model: SynesthesiaMiniLM, rep: Report, clips: list[data.Clip],
                  vecs: torch.Tensor, pics: torch.Tensor,
                  pic_labels: np.ndarray) -> None:  # fmt: skip
    """Every held-out clip of a class with pictures queries the CIFAR test images; P@10."""
    seen: set[str] = set()
    queries, targets = [], []
    for clip, v in zip(clips, vecs, strict=True):
        key = clip.path.stem.rsplit("-", 1)[0] if clip.source == "esc50" else clip.path.stem
        if clip.label in SOUND_TO_PICTURE and key not in seen:  # ESC-10 clips recur in ESC-50
            seen.add(key)
            queries.append(v)
            targets.append(SOUND_TO_PICTURE[clip.label])
    tux = [t for t in data.tux_items(held_out=True) if t.audio and t.label in SOUND_TO_PICTURE]
    if tux:
        tclips = [data.Clip(t.audio, t.label, "tux") for t in tux if t.audio]
        queries += list(audio_vectors(model, tclips))
        targets += [SOUND_TO_PICTURE[t.label] for t in tux]
    if not queries:
        return
    top = (torch.stack(queries) @ pics.T).topk(10, dim=1).indices.numpy()
    hits: dict[str, list[float]] = defaultdict(list)
    for row, want in zip(top, targets, strict=True):
        k = data.CIFAR_CLASSES.index(want)
        hits[want].append(float((pic_labels[row] == k).mean()))
    for cls in sorted(hits):
        rep.per_class[cls] = float(np.mean(hits[cls]))
        rep.counts[cls] = len(hits[cls])
    rep.metrics["bark->photo mean class P@10"] = float(np.mean(list(rep.per_class.values())))

"""Text anchors for a tower's head (``models.minilm.config`` explains the head): the vocabulary
is every class prompt of the training data (each class name of CIFAR-10, ESC-10 and ESC-50 in
every image and audio prompt template), embedded by the frozen all-MiniLM-L6-v2 text path; with
``anchor_captions``, also the captions of the training sounds and pictures. No evaluation
item's caption is ever in it.

Captions are left out by default: each names one training clip or picture, so a sound the tower
takes for that one clip (a held-out dog bark heard as Tux Paint's bear) would be pulled onto
its caption, and so next to that one picture; a class prompt stands for many clips
(docs/model-history.md, "anchor vocabulary")."""

from __future__ import annotations

import dataclasses

import torch

from synesthesia.models.minilm.model import SynesthesiaMiniLM, TextAnchors
from synesthesia.train import data
from synesthesia.train.config import TrainConfig
from synesthesia.train.sets import CIFAR_NAMES, esc50_names
from synesthesia.train.texts import AUDIO_TEMPLATES, ESC10_TO_ESC50, IMAGE_TEMPLATES, embed_texts


def anchor_vocabulary(captions: bool = False, gallery: bool = True) -> list[str]:
    """The training texts, sorted and without repeats: the class prompts, and with ``captions``
    the training sounds' and pictures' captions (``gallery``: also those of the Debian Tux Paint
    gallery's training pictures, ``data.gallery_pictures``)."""
    names = set(esc50_names()) | set(ESC10_TO_ESC50) | set(CIFAR_NAMES)
    names |= {n for syns in CIFAR_NAMES.values() for n in syns}
    texts = {t.format(n) for n in names for t in (*AUDIO_TEMPLATES, *IMAGE_TEMPLATES)}
    if captions:
        texts |= {t.caption for t in data.tux_items(held_out=False)}
        texts |= {c.caption for c in data.opensfx_clips()}
        if gallery:
            texts |= {t.caption for t in data.gallery_pictures()}
    return sorted(t for t in texts if t.strip())


@torch.no_grad()
def attach_anchors(model: SynesthesiaMiniLM, modality: str, texts: list[str]) -> None:
    """Give ``model``'s ``modality`` tower a text-anchor head over ``texts`` (its config's
    ``anchor_tau`` and ``anchor_blend``); the config records the count, so the file it is
    saved to loads with the head."""
    tower = getattr(model, modality)
    cfg = getattr(model.cfg, modality)
    if tower is None or cfg.anchor_tau <= 0:
        raise ValueError(f"{modality}: no tower, or anchor_tau is not > 0 in its config")
    if not texts:
        raise ValueError("text anchors need at least one text")
    head = TextAnchors(model.cfg.dim, len(texts), cfg.anchor_tau, cfg.anchor_blend)
    head.vectors.copy_(embed_texts(model, texts))
    head.texts = list(texts)
    tower.anchors = head
    model.cfg = dataclasses.replace(
        model.cfg, **{modality: dataclasses.replace(cfg, anchors=len(texts))}
    )


def attach_training_anchors(model: SynesthesiaMiniLM, cfg: TrainConfig, modality: str) -> None:
    """``attach_anchors`` over the run's training vocabulary (with the captions when the stage's
    ``anchor_captions`` asks; the gallery's when its image tower trained on the gallery)."""
    texts = anchor_vocabulary(cfg.stage(modality).anchor_captions, gallery=cfg.image.gallery)
    attach_anchors(model, modality, texts)

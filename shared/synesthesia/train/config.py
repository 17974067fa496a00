"""Training configuration: a JSON file under configs/train/."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from synesthesia.models.minilm.config import AudioCfg, ImageCfg, MiniLMConfig


@dataclass(frozen=True)
class Stage:
    """Optimisation of one tower."""

    steps: int = 1000
    batch: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup: int = 100
    logit_scale: float = 30.0  # fixed inverse temperature of the contrastive loss
    align_weight: float = 0.5  # pull towards the class's mean prompt vector (cross-modal glue)
    balance_alpha: float = 0.5  # class-balanced sampling: item weight ~ class_count^-alpha
    tux_share: float = 0.03  # images: share of draws from Tux Paint pictures
    mix_prob: float = 0.5  # audio: share of mixed clips
    other_share: float | None = None  # audio: share of draws from OpenSFX + Tux Paint (None: as
    # class balancing gives; their ~160 one-clip classes then take about half the draws)
    warp: float = 0.0  # audio: time stretch / mel shift strength (0 = off)
    crop_prob: float = 0.0  # audio: share of short excerpts around a clip's loudest frame
    crop_seconds: tuple[float, float] = (0.5, 2.5)  # their length range
    describe: bool = False  # audio: add texts.SOUND_DESCRIPTIONS to the class names
    gallery: bool = False  # images: add the Debian Tux Paint gallery's other captioned pictures
    # images: the ImageNet sample's photos of these classes ("train": all 423 train classes;
    # "fit": train minus the validation classes, openworld.split_wnids), with ``imagenet_share``
    # of the draws; ``imagenet_concepts``: only the first N of them (a seeded order: the
    # learning curve); ``wordnet``: their captions also from WordNet (synonyms, gloss,
    # hypernyms; train time only); ``photo_area``: the random-resized-crop's share of a photo
    imagenet: str | None = None
    # leave out every training item (drawing, sound) and name that names an unseen ImageNet
    # class (the sample's eval classes: manifest label or WordNet synonym; needs WordNet), in
    # a stage without ImageNet photos too. ESC-50's own class names (hen, pig, chainsaw,
    # vacuum cleaner) stay: they are the sound benchmark's classes. A stage with ``imagenet``
    # always leaves them out.
    unseen_out: bool = False
    imagenet_share: float = 0.0
    # images: share of the draws from Open Clip Art's captioned drawings (``clipart``: 2,548
    # pictures of things, fetched once from Debian; those named like an unseen class are
    # left out, as with ``unseen_out``), class-balanced among them
    clipart_share: float = 0.0
    # images: this many common WordNet nouns of things (``wordnet.distractors``: unrelated to
    # every class trained on and to the sample's classes) join the bank as classes without
    # pictures, so that a picture must be nearer its own words than thousands of others
    distractors: int = 0
    imagenet_concepts: int | None = None
    wordnet: bool = False
    photo_area: tuple[float, float] = (0.25, 1.0)
    cut_mix: float = 0.0  # images: share of the batch's pictures given a CutMix patch
    # start the tower from this towers file's weights (e.g. the image tower the audio tower was
    # bound to, fine-tuned here on photos) instead of a fresh one
    init_from: str | None = None
    # audio: pull a sound towards the image tower's vectors of pictures of the same thing (its
    # own Tux Paint picture, else the centroid of its picture class); 0 = off
    picture_weight: float = 0.0
    picture_ce: float = 0.0  # audio: cross-entropy among CIFAR-10 picture-class means
    own_ce: float = 0.0  # audio: cross-entropy of a Tux Paint sound among the Tux pictures
    picture_scale: float = 100.0  # its inverse temperature (the class means are close)
    picture_from: str = "run"  # the image tower: "run" (this run's checkpoint) or a towers file
    # audio: start the stem from the trained image tower's stem (``picture_from``; the model
    # config's audio stem must be laid out like the image stem: ``patchify``, same widths and
    # blocks). Its first conv sums the three colour filters into one log-mel filter.
    init_from_image: bool = False
    stem_lr_scale: float = 1.0  # learning-rate factor of the stem's conv body
    # the text-anchor head's vocabulary: class prompts, plus the training captions if true
    anchor_captions: bool = False
    # train through the text-anchor head (the model config's anchor_tau), as it is served
    through_anchors: bool = False
    ckpt_every: int = 250
    limit: int | None = None  # subsample the training set (smoke tests)


@dataclass(frozen=True)
class TrainConfig:
    name: str = "run"
    seed: int = 0
    model: MiniLMConfig = field(default_factory=MiniLMConfig)
    image: Stage = field(default_factory=Stage)
    audio: Stage = field(default_factory=lambda: Stage(batch=32, lr=1e-3))
    eval_limit: int | None = None  # evaluate on the first N items of each eval set (smoke)

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        raw: dict[str, Any] = json.loads(Path(path).read_text())
        return cls.from_dict(raw)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown training config keys: {sorted(unknown)}")
        m = raw.get("model", {})
        model = MiniLMConfig.from_json(
            json.dumps({"image": m.get("image", {}), "audio": m.get("audio", {})})
        )
        base = cls()
        return cls(
            name=raw.get("name", base.name),
            seed=raw.get("seed", base.seed),
            model=model,
            image=replace(base.image, **_tuples(raw.get("image", {}))),
            audio=replace(base.audio, **_tuples(raw.get("audio", {}))),
            eval_limit=raw.get("eval_limit"),
        )

    def stage(self, modality: str) -> Stage:
        return self.image if modality == "image" else self.audio

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def _tuples(values: dict[str, Any]) -> dict[str, Any]:
    """JSON lists as the tuples the dataclasses hold, so that a saved config equals its source."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}


__all__ = ["AudioCfg", "ImageCfg", "Stage", "TrainConfig"]

"""The training loop of one tower: seeded, class-balanced, checkpointed, resumable."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from synesthesia.models.minilm.model import SynesthesiaMiniLM
from synesthesia.models.minilm.preprocess import window_frames
from synesthesia.models.minilm.stems import AudioStem, ImageStem
from synesthesia.models.minilm.weights import load_backbone
from synesthesia.train.anchors import attach_training_anchors
from synesthesia.train.augment import (
    augment_fbank,
    augment_images,
    cut_mix,
    normalise_images,
    random_resized_crop,
)
from synesthesia.train.config import Stage, TrainConfig
from synesthesia.train.sets import TrainSet, audio_set, image_set


def build_model(cfg: TrainConfig, modalities: tuple[str, ...]) -> SynesthesiaMiniLM:
    """The network with the real, frozen all-MiniLM-L6-v2 backbone and fresh towers."""
    model = load_backbone(cfg.model, modalities)
    model.backbone.requires_grad_(False).eval()
    return model


def picture_model(cfg: TrainConfig, run_dir: Path) -> SynesthesiaMiniLM:
    """The trained image tower the audio tower is bound to (``audio.picture_from``)."""
    src = cfg.audio.picture_from
    if src == "run":
        path = ckpt_path(run_dir, "image")
        if not path.is_file():
            raise FileNotFoundError(
                f"the audio stage binds sounds to the image tower (picture_weight, picture_ce or "
                f"own_ce > 0), but {path} does not exist: train the image tower first "
                "(synesthesia train CONFIG --modality image)"
            )
        return load_trained(cfg, run_dir, ("image",))
    from synesthesia.models.minilm.weights import load_model

    return load_model(src, ("image",))[0]


def init_audio_stem_from_image(audio: AudioStem, image: ImageStem) -> None:
    """Copy a trained image stem's conv body into the audio stem (``init_from_image``): a
    log-mel window is read as a one-channel picture, so the first conv's three colour filters
    are summed (a grey picture, the same value in R, G and B, gives the same response)."""
    source = image.body.state_dict()
    first = "0.weight"
    if first in source:
        source[first] = source[first].sum(dim=1, keepdim=True)
    target = audio.body.state_dict()
    differ = [
        f"{k}: image {tuple(source[k].shape) if k in source else None} vs audio "
        f"{tuple(target[k].shape) if k in target else None}"
        for k in sorted(set(source) | set(target))
        if k not in source or k not in target or source[k].shape != target[k].shape
    ]
    if differ:
        raise ValueError(
            "init_from_image: the audio stem must be laid out like the image stem (model.audio "
            "patchify: true, the same channels and blocks_per_stage as model.image); first "
            f"difference {differ[0]}"
        )
    audio.body.load_state_dict(source)


def init_tower(tower: torch.nn.Module, weights: str, modality: str) -> list[str]:
    """Load ``modality``'s trained tower from the towers file ``weights`` (``init_from``). Every
    trained tensor must fit the new tower (the image size may differ: the stem serves any
    size); parts the trained tower lacks (a tower of another ``mode``: its own Transformer, the
    hybrid's bypass) start fresh, and their names are returned."""
    from synesthesia.models.minilm.weights import load_model

    source = getattr(load_model(weights, (modality,))[0], modality)
    state = {k: v for k, v in source.state_dict().items() if not k.startswith("anchors.")}
    target = tower.state_dict()
    misfit = [
        f"{k}: trained {tuple(v.shape)}, new {tuple(target[k].shape) if k in target else None}"
        for k, v in state.items()
        if k not in target or target[k].shape != v.shape
    ]
    if misfit:
        raise ValueError(
            f"init_from {weights}: the trained {modality} tower does not fit this config's "
            f"tower ({len(misfit)} tensors differ; first {misfit[0]})"
        )
    fresh = tower.load_state_dict(state, strict=False).missing_keys
    return [k for k in fresh if not k.startswith("anchors.")]


def ckpt_path(run_dir: Path, modality: str) -> Path:
    return run_dir / f"{modality}.ckpt.pt"


def _batch_image(
    ts: TrainSet, idx: torch.Tensor, model: SynesthesiaMiniLM, gen: torch.Generator, stage: Stage
) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch's pictures (CIFAR-10 and drawings: zoom/shift crops; photos: random-resized
    crops) at the model's image size, and their one-hot class targets."""
    assert ts.pixels is not None and model.image is not None
    cfg = model.cfg.image
    n = len(ts.pixels)
    small, large = idx[idx < n], idx[idx >= n]
    x = augment_images(ts.pixels[small].permute(0, 3, 1, 2).float() / 255.0, gen)
    if len(large):
        assert ts.photos is not None
        px = ts.photos[large - n].permute(0, 3, 1, 2).float() / 255.0
        x = torch.cat([x, random_resized_crop(px, gen, cfg.image_size, stage.photo_area)])
        idx = torch.cat([small, large])
    x = normalise_images(x, cfg.mean, cfg.std)
    targets = ts.targets(idx)
    if stage.cut_mix > 0:
        x, targets = cut_mix(x, targets, gen, stage.cut_mix)
    tokens, valid = model.image.stem(x)
    return model.image.pool(tokens, valid, model.backbone), targets


def pick_excerpt(
    clip: torch.Tensor, total: int, crop: tuple[int, int], crop_prob: float, gen: torch.Generator
) -> tuple[int, int]:
    """(start, frames) of a training excerpt of the log-mel ``clip`` [T, M]: with ``crop_prob``,
    a short, busy excerpt of ``crop`` frames (a user's clip is often one bark, not 5 s of a
    field recording) that covers the loudest frame at a random place; otherwise a random
    window of ``total`` frames, like serving's windows of a long clip."""
    n = clip.shape[0]
    shortest, longest = crop
    if n > shortest and float(torch.rand(1, generator=gen)) < crop_prob:
        size = int(torch.randint(shortest, min(longest, n) + 1, (1,), generator=gen))
        peak = int(clip.mean(dim=1).argmax())
        offset = int(torch.randint(0, size, (1,), generator=gen))
        return min(max(0, peak - offset), n - size), size
    return int(torch.randint(0, max(1, n - total + 1), (1,), generator=gen)), min(total, n)


def _batch_audio(
    ts: TrainSet, idx: torch.Tensor, model: SynesthesiaMiniLM, gen: torch.Generator, stage: Stage
) -> tuple[torch.Tensor, torch.Tensor]:
    assert ts.fbanks is not None and model.audio is not None
    acfg = model.cfg.audio
    total = window_frames(acfg)
    fb = torch.zeros(len(idx), total, acfg.num_mel_bins)
    frames = torch.zeros(len(idx), dtype=torch.long)
    shortest = max(8, round(stage.crop_seconds[0] * 1000 / acfg.frame_shift_ms))
    longest = max(shortest, round(stage.crop_seconds[1] * 1000 / acfg.frame_shift_ms))
    for j, i in enumerate(idx.tolist()):
        clip = ts.fbanks[i]
        start, size = pick_excerpt(clip, total, (shortest, longest), stage.crop_prob, gen)
        w = clip[start : start + size]
        fb[j, : w.shape[0]] = w
        frames[j] = w.shape[0]
    k = len(ts.bank.keys)
    targets = F.one_hot(ts.labels[idx], k).float()
    if ts.pictures is not None:
        # mixed like the targets: [classes | picture class | own drawing | anchor | has anchor]
        pic = ts.pictures
        anchors = pic.anchor[idx]
        has = (anchors.abs().sum(-1, keepdim=True) > 0).float()
        targets = torch.cat(
            [targets, _onehot(pic.target[idx], len(pic.centroids)),
             _onehot(pic.own[idx], len(pic.drawings)), anchors, has], dim=1,
        )  # fmt: skip
    fb, frames, targets = augment_fbank(
        fb, frames, targets, gen, acfg.fbank_std, stage.mix_prob, stage.warp
    )
    tokens, valid = model.audio.stem(fb, frames)
    out = model.audio.pool(tokens, valid, model.backbone)
    if model.audio.anchors is not None:  # ``through_anchors``: train what is served
        out = model.audio.anchors(F.normalize(out, dim=-1))
    return out, targets


def _onehot(index: torch.Tensor, n: int) -> torch.Tensor:
    """One-hot rows; an index of -1 gives a row of zeros."""
    return F.one_hot(index.clamp(min=0), n).float() * (index >= 0)[:, None]


def contrastive_loss(
    out: torch.Tensor, targets: torch.Tensor, ts: TrainSet, gen: torch.Generator, stage: Stage
) -> torch.Tensor:
    """Soft cross-entropy over the class bank (one random prompt per class per step) plus a
    cosine pull towards the class's mean prompt vector. Audio bound to pictures (``ts.pictures``,
    the extra target columns) adds ``picture_weight`` x a cosine pull towards where pictures of
    the same thing land, ``picture_ce`` x a cross-entropy among the picture classes' mean
    vectors (so that a sound is nearer its own pictures than others, which ranking needs) and
    ``own_ce`` x a cross-entropy of a Tux Paint sound among all Tux Paint pictures (its own
    picture first)."""
    z = F.normalize(out, dim=-1)
    k = len(ts.bank.keys)
    picture = out.new_zeros(())
    if ts.pictures is not None:
        pic = ts.pictures
        cls, onehot, own, anchors, has = targets.split(
            [k, len(pic.centroids), len(pic.drawings), z.shape[1], 1], dim=1
        )
        cos = (z * F.normalize(anchors, dim=-1)).sum(-1)
        logp = F.log_softmax(stage.picture_scale * z @ pic.centroids.T, dim=-1)
        logq = F.log_softmax(stage.picture_scale * z @ pic.drawings.T, dim=-1)
        picture = (
            stage.picture_weight * (has[:, 0] * (1 - cos)).sum()
            - stage.picture_ce * (onehot * logp).sum()
            - stage.own_ce * (own * logq).sum()
        ) / len(z)
        targets = cls
    texts = ts.bank.sample(gen)
    logits = stage.logit_scale * z @ texts.T
    ce = -(targets * F.log_softmax(logits, dim=-1)).sum(-1).mean()
    goal = F.normalize(targets @ ts.bank.prototypes(), dim=-1)
    align = (1 - (z * goal).sum(-1)).mean()
    return ce + stage.align_weight * align + picture


def lr_at(step: int, stage: Stage) -> float:
    if step < stage.warmup:
        return stage.lr * (step + 1) / stage.warmup
    p = (step - stage.warmup) / max(1, stage.steps - stage.warmup)
    return stage.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, p)))


def train_tower(
    cfg: TrainConfig,
    modality: str,
    run_dir: Path,
    resume: bool = True,
    progress: bool = True,
    stop_at: int | None = None,
) -> tuple[SynesthesiaMiniLM, list[float]]:
    """Train one tower to ``stage.steps``; returns the model and this call's per-step losses."""
    stage = cfg.stage(modality)
    model, ts = prepare(cfg, modality, run_dir)
    tower = getattr(model, modality)
    params = [p for p in tower.parameters() if p.requires_grad]
    opt = make_optimizer(tower, params, stage)
    path = ckpt_path(run_dir, modality)
    step = load_ckpt(path, tower, opt) if resume and path.is_file() else 0
    run_dir.mkdir(parents=True, exist_ok=True)
    end = stage.steps if stop_at is None else min(stop_at, stage.steps)
    losses: list[float] = []
    tower.train()
    with StepLog(run_dir / f"{modality}.log.jsonl", stage, step, modality, progress) as log:
        while step < end:
            losses.append(train_step(model, modality, ts, opt, params, cfg, step))
            step += 1
            log.record(step, losses)
            if step % stage.ckpt_every == 0 or step == end:
                save_ckpt(path, tower, opt, step)
    tower.eval()
    return model, losses


def prepare(cfg: TrainConfig, modality: str, run_dir: Path) -> tuple[SynesthesiaMiniLM, TrainSet]:
    """The seeded network with its tower initialised as the stage asks (fresh, ``init_from`` a
    towers file, or the audio stem from the trained image stem) and the training set."""
    stage = cfg.stage(modality)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, (modality,))
    tower = getattr(model, modality)
    if stage.through_anchors:
        attach_training_anchors(model, cfg, modality)
    if stage.init_from:
        fresh = init_tower(tower, stage.init_from, modality)
        if fresh:
            print(f"init_from {stage.init_from}: {len(fresh)} tensors start fresh ({fresh[0]} ...)")
    if modality == "image":
        return model, image_set(model, cfg.model.image, stage, cfg.seed)
    bind = stage.picture_weight > 0 or stage.picture_ce > 0 or stage.own_ce > 0
    pictures = picture_model(cfg, run_dir) if bind or stage.init_from_image else None
    if stage.init_from_image:
        assert pictures is not None and pictures.image is not None
        audio_stem, image_stem = tower.stem, pictures.image.stem
        assert isinstance(audio_stem, AudioStem) and isinstance(image_stem, ImageStem)
        init_audio_stem_from_image(audio_stem, image_stem)
    return model, audio_set(model, cfg.model.audio, stage, cfg.seed, pictures if bind else None)


def make_optimizer(
    tower: torch.nn.Module, params: list[torch.nn.Parameter], stage: Stage
) -> torch.optim.Optimizer:
    """AdamW over [stem body, the rest] with their own learning-rate factors when they differ
    (checkpoints of one-factor runs keep their two groups: matrices with weight decay, the rest
    without)."""
    stem = tower.stem
    assert isinstance(stem, (AudioStem, ImageStem))
    body = {id(p) for p in stem.body.parameters()}
    parts = (
        [(stage.stem_lr_scale, [p for p in params if id(p) in body]),
         (1.0, [p for p in params if id(p) not in body])]
        if stage.stem_lr_scale != 1.0
        else [(1.0, params)]
    )  # fmt: skip
    groups = []
    for scale, ps in parts:
        groups += [
            {"params": [p for p in ps if p.ndim >= 2], "weight_decay": stage.weight_decay,
             "lr_scale": scale},
            {"params": [p for p in ps if p.ndim < 2], "weight_decay": 0.0, "lr_scale": scale},
        ]  # fmt: skip
    return torch.optim.AdamW(groups, lr=stage.lr)


def train_step(
    model: SynesthesiaMiniLM,
    modality: str,
    ts: TrainSet,
    opt: torch.optim.Optimizer,
    params: list[torch.nn.Parameter],
    cfg: TrainConfig,
    step: int,
) -> float:
    """One optimisation step on the batch drawn for ``step`` (seeded per step, so a resumed run
    draws exactly the batches a straight run would); returns its loss."""
    stage = cfg.stage(modality)
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
    idx = torch.multinomial(ts.weights, stage.batch, replacement=True, generator=gen)
    for g in opt.param_groups:
        g["lr"] = lr_at(step, stage) * g.get("lr_scale", 1.0)
    if modality == "image":
        out, targets = _batch_image(ts, idx, model, gen, stage)
    else:
        out, targets = _batch_audio(ts, idx, model, gen, stage)
    loss = contrastive_loss(out, targets, ts, gen, stage)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 5.0)
    opt.step()
    return float(loss.detach())


class StepLog:
    """The progress bar and the run's ``<modality>.log.jsonl`` (mean loss every 25 steps)."""

    def __init__(self, path: Path, stage: Stage, step: int, modality: str, progress: bool) -> None:
        self.path, self.stage = path, stage
        self.bar = tqdm(total=stage.steps, initial=step, desc=f"train {modality}",
                        disable=not progress)  # fmt: skip
        self.t0 = time.perf_counter()

    def __enter__(self) -> StepLog:
        self.file = self.path.open("a")
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()
        self.file.close()

    def record(self, step: int, losses: list[float]) -> None:
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{losses[-1]:.3f}")
        if step % 25 == 0 or step == self.stage.steps:
            recent = losses[-25:]
            rec = {"step": step, "loss": sum(recent) / len(recent),
                   "lr": lr_at(step - 1, self.stage),
                   "sec": round(time.perf_counter() - self.t0, 1)}  # fmt: skip
            self.file.write(json.dumps(rec) + "\n")
            self.file.flush()


def load_ckpt(path: Path, tower: torch.nn.Module, opt: torch.optim.Optimizer) -> int:
    """Resume ``tower`` and ``opt`` from a checkpoint; returns its step."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    missing, unexpected = tower.load_state_dict(state["tower"], strict=False)
    if unexpected or any(not k.startswith("anchors.") for k in missing):  # see save_ckpt
        raise RuntimeError(f"{path} does not match the tower: {missing} {unexpected}")
    opt.load_state_dict(state["opt"])
    return int(state["step"])


def save_ckpt(path: Path, tower: torch.nn.Module, opt: torch.optim.Optimizer, step: int) -> None:
    tmp = path.with_suffix(".tmp")
    # the text anchors are not trained and are rebuilt from the vocabulary: not checkpointed
    weights = {k: v for k, v in tower.state_dict().items() if not k.startswith("anchors.")}
    torch.save({"tower": weights, "opt": opt.state_dict(), "step": step}, tmp)
    tmp.replace(path)


def soup_state(cfg: TrainConfig, runs: list[Path], modality: str) -> dict[str, torch.Tensor]:
    """The uniform average of the ``modality`` checkpoints of ``runs`` (a "model soup"): draws
    of one recipe that differ only in their seed. Their towers start from the same trained stem
    (``init_from_image``), so their weights average into one tower that is better than each,
    at the cost of one (docs/model-history.md, "model soup")."""
    states = []
    for run in runs:
        other = TrainConfig.load(run / "config.json")
        if dataclasses.replace(other, name=cfg.name, seed=cfg.seed) != cfg:
            raise ValueError(f"soup: {run} was trained with another recipe than {cfg.name!r} "
                             "(only the seed and the name may differ)")  # fmt: skip
        states.append(torch.load(ckpt_path(run, modality), map_location="cpu", weights_only=True))
    first = states[0]["tower"]
    for run, state in zip(runs, states, strict=True):
        if state["tower"].keys() != first.keys():
            raise ValueError(f"soup: {run}'s {modality} tower has other weights than {runs[0]}'s")
    return {
        k: v if not v.is_floating_point()
        else torch.stack([s["tower"][k] for s in states]).mean(0)
        for k, v in first.items()
    }  # fmt: skip


def load_trained(
    cfg: TrainConfig,
    run_dir: Path,
    modalities: tuple[str, ...],
    soup: tuple[Path, ...] = (),
) -> SynesthesiaMiniLM:
    """A model whose towers come from the run's checkpoints, with the text-anchor heads that
    the config asks for (``anchor_tau`` > 0) attached. ``soup``: other runs of the recipe whose
    audio towers are averaged with this run's (``soup_state``)."""
    model = build_model(cfg, modalities)
    for m in modalities:
        if m == "audio" and soup:
            weights = soup_state(cfg, [run_dir, *soup], m)
        else:
            path = ckpt_path(run_dir, m)
            weights = torch.load(path, map_location="cpu", weights_only=True)["tower"]
        getattr(model, m).load_state_dict(weights)
    model.eval().requires_grad_(False)
    for m in modalities:
        if getattr(cfg.model, m).anchor_tau > 0:
            attach_training_anchors(model, cfg, m)
    return model

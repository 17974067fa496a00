"""The pieces that bind sounds to pictures: the picture term of the loss, how it survives mixing,
and which gallery pictures the image tower may train on (never a held-out one)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from synesthesia.train.augment import augment_fbank
from synesthesia.train.config import Stage
from synesthesia.train.data import data_root
from synesthesia.train.loop import contrastive_loss
from synesthesia.train.sets import Pictures, TrainSet
from synesthesia.train.texts import ClassBank

from tests.shared_data import require


def _needs_data() -> None:
    require(data_root() / "tuxpaint_stamps" / "manifest.jsonl", "training data (SYNESTHESIA_DATA)")


def _set(k: int = 3, d: int = 8, p: int = 2) -> TrainSet:
    gen = torch.Generator().manual_seed(1)
    emb = F.normalize(torch.randn(2 * k, d, generator=gen), dim=-1)
    bank = ClassBank([f"c{i}" for i in range(k)], emb, torch.arange(k).repeat_interleave(2), [])
    centroids = F.normalize(torch.randn(p, d, generator=gen), dim=-1)
    drawings = F.normalize(torch.randn(3, d, generator=gen), dim=-1)
    none = torch.zeros(1, dtype=torch.long)
    pictures = Pictures(centroids, none, torch.zeros(1, d), drawings, none)
    return TrainSet(bank, torch.zeros(1, dtype=torch.long), torch.ones(1), pictures=pictures)


def _loss(out: torch.Tensor, targets: torch.Tensor, ts: TrainSet, **stage: float) -> torch.Tensor:
    return contrastive_loss(out, targets, ts, torch.Generator().manual_seed(5), Stage(**stage))


def test_picture_terms_pull_only_clips_with_a_picture() -> None:
    ts = _set()
    gen = torch.Generator().manual_seed(0)
    out = F.normalize(torch.randn(4, 8, generator=gen), dim=-1)
    cls = F.one_hot(torch.tensor([0, 1, 2, 0]), 3).float()
    has = torch.tensor([[1.0], [0.0], [1.0], [0.0]])
    nopic = torch.zeros(4, 2 + 3)  # no picture class, no own drawing
    base = _loss(out, torch.cat([cls, nopic, 0 * out, 0 * has], 1), ts, align_weight=0.0)
    assert torch.allclose(
        base, _loss(out, cls, TrainSet(ts.bank, ts.labels, ts.weights), align_weight=0.0)
    )
    # cosine pull: anchors equal to the outputs cost nothing; opposite ones 2 per anchored clip
    same = torch.cat([cls, nopic, out * has, has], dim=1)
    opposite = torch.cat([cls, nopic, -out * has, has], dim=1)
    assert torch.allclose(_loss(out, same, ts, picture_weight=1.0, align_weight=0.0), base)
    got = _loss(out, opposite, ts, picture_weight=1.0, align_weight=0.0)
    assert torch.allclose(got, base + 2 * 2 / 4, atol=1e-5)
    # picture cross-entropy: only clips with a picture class count, each -log p(its class)
    onehot = torch.tensor([[1.0, 0], [0, 0], [0, 1], [0, 0]])
    ext = torch.cat([cls, onehot, torch.zeros(4, 3), 0 * out, 0 * has], dim=1)
    assert ts.pictures is not None
    logp = F.log_softmax(100.0 * out @ ts.pictures.centroids.T, dim=-1)
    want = -(logp[0, 0] + logp[2, 1]) / 4
    got = _loss(out, ext, ts, picture_ce=1.0, align_weight=0.0)
    assert torch.allclose(got, base + want, atol=1e-4)
    # own drawing: a Tux Paint sound among all the drawings, its own first
    own = torch.tensor([[0, 0, 0], [0, 1.0, 0], [0, 0, 0], [0, 0, 0]])
    ext = torch.cat([cls, torch.zeros(4, 2), own, 0 * out, 0 * has], dim=1)
    logq = F.log_softmax(100.0 * out @ ts.pictures.drawings.T, dim=-1)
    got = _loss(out, ext, ts, own_ce=1.0, align_weight=0.0)
    assert torch.allclose(got, base - logq[1, 1] / 4, atol=1e-4)
    # the gradient moves an anchored output towards its picture, and not the others
    z = out.clone().requires_grad_(True)
    anchor = F.normalize(torch.randn(4, 8, generator=gen), dim=-1)
    ext = torch.cat([cls, nopic, anchor * has, has], dim=1)
    _loss(z, ext, ts, picture_weight=1.0, align_weight=0.0, logit_scale=1e-6).backward()
    assert z.grad is not None
    step = F.normalize(out - 0.1 * z.grad, dim=-1)
    assert (step[0] @ anchor[0]) > (out[0] @ anchor[0])
    assert torch.allclose(z.grad[1], torch.zeros(8), atol=1e-3)  # (CE only; tiny logit scale)


def test_mixing_carries_the_picture_with_its_weight() -> None:
    b, k, d = 6, 3, 4
    gen = torch.Generator().manual_seed(0)
    targets = F.one_hot(torch.tensor([0, 1, 2, 0, 1, 2]), k).float()
    anchors = F.normalize(torch.randn(b, d, generator=gen), dim=-1)
    has = torch.tensor([1.0, 0, 1, 0, 1, 1])[:, None]
    ext = torch.cat([targets, anchors * has, has], dim=1)
    fb = torch.randn(b, 100, 16, generator=gen)
    _, _, mixed = augment_fbank(fb, torch.full((b,), 100), ext, gen, 4.0, mix_prob=1.0)
    cls, anc, mass = mixed[:, :k], mixed[:, k:-1], mixed[:, -1]
    weight_self = cls.max(1).values  # the clip's own share (mixing weights are < 0.5 for partners)
    assert torch.allclose(cls.sum(1), torch.ones(b), atol=1e-6)
    assert bool(((mass >= 0) & (mass <= 1 + 1e-6)).all())
    # an anchored clip mixed with an unanchored one keeps its picture direction, with less mass
    for i in range(b):
        if has[i] == 1 and mass[i] < 1 - 1e-6:
            assert torch.allclose(F.normalize(anc[i], dim=-1), anchors[i], atol=1e-5)
            assert mass[i] <= weight_self[i] + 1e-6


def test_gallery_pictures_skip_held_out_and_known_items(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _needs_data()
    from synesthesia.apps.gallery import DONE_MARKER
    from synesthesia.train import data

    root = tmp_path / "gallery" / "tuxpaint-stamps"
    known = data.tux_items(held_out=False)[0].image.relative_to(data_root() / "tuxpaint_stamps")
    held = data.tux_items(held_out=True)[0].image.relative_to(data_root() / "tuxpaint_stamps")
    for rel, caption in [(known, "A known one."), (held, "A held-out one."),
                         (Path("space/rocket_new.png"), "A rocket."),
                         (Path("food/no_caption.png"), "")]:  # fmt: skip
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"png")
        if caption:
            (root / rel).with_suffix(".txt").write_text(caption + "\n")
    (root / DONE_MARKER).write_text("test\n")
    monkeypatch.setenv("SYNESTHESIA_CACHE", str(tmp_path))
    got = data.gallery_pictures()
    assert [(g.image.relative_to(root).as_posix(), g.caption) for g in got] == [
        ("space/rocket_new.png", "A rocket.")
    ]


def test_warp_stretches_time_and_shifts_mel_bins_within_the_window() -> None:
    from synesthesia.train.augment import _warp

    gen = torch.Generator().manual_seed(3)
    fb = torch.randn(16, 200, 32, generator=gen)
    frames = torch.tensor([200, 120, 9, 4] * 4)
    out, new = _warp(fb, frames, gen, 0.25)
    assert out.shape == fb.shape and bool((new <= 200).all())
    assert bool(((new >= 8) | (new == frames)).all())
    assert any(int(a) != int(b) for a, b in zip(new, frames, strict=True))  # some were stretched
    for i in range(16):  # nothing beyond the valid frames
        assert float(out[i, int(new[i]) :].abs().sum()) == 0.0 or int(new[i]) == int(frames[i])
    assert bool(torch.isfinite(out).all())


def test_other_sources_get_their_share_of_the_draws() -> None:
    from synesthesia.train.data import Clip
    from synesthesia.train.sets import _share_others, balanced_weights

    clips = [Clip(Path(f"{i}.ogg"), "x", src) for i, src in
             enumerate(["esc10"] * 6 + ["esc50"] * 2 + ["tux", "opensfx"])]  # fmt: skip
    w = balanced_weights(np.array([0] * 6 + [1, 1, 2, 3]), 0.5)
    assert _share_others(w, clips, None) is w
    got = _share_others(w, clips, 0.2)
    assert abs(float(got[8:].sum()) - 0.2) < 1e-9 and abs(float(got.sum()) - 1) < 1e-9
    assert torch.allclose(got[:8] / got[:8].sum(), w[:8] / w[:8].sum())  # balance kept inside


def test_short_excerpts_cover_the_loudest_moment() -> None:
    from synesthesia.train.loop import pick_excerpt

    clip = torch.full((498, 64), -3.0)
    clip[300:310] = 2.0  # one bark in 5 s of near-silence
    gen = torch.Generator().manual_seed(0)
    sizes = set()
    for _ in range(200):
        start, size = pick_excerpt(clip, 498, (50, 250), 1.0, gen)
        assert 50 <= size <= 250 and start >= 0 and start + size <= 498
        assert start <= 300 < start + size  # the bark is in it
        sizes.add(size)
    assert len(sizes) > 20
    # without cropping: the whole window; a clip shorter than the shortest excerpt: whole too
    assert pick_excerpt(clip, 498, (50, 250), 0.0, gen) == (0, 498)
    assert pick_excerpt(clip[:40], 498, (50, 250), 1.0, gen) == (0, 40)


def test_gallery_ranks_count_the_pictures_above_each_own_picture(tmp_path: Path) -> None:
    import shutil

    from synesthesia.models.minilm.weights import load_model
    from synesthesia.train import data
    from synesthesia.train.evaluate import gallery_ranks

    _needs_data()
    shared = data_root() / "tuxpaint_stamps"
    held = [t for t in data.tux_items(held_out=True) if t.audio]
    others = data.tux_items(held_out=False)[:5]
    for item in held[:2] + others:  # two held-out pictures among five others
        dest = tmp_path / item.image.relative_to(shared)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(item.image, dest)
    model, _ = load_model(None, ("audio", "image"))
    ranks = gallery_ranks(model, tmp_path)
    assert set(ranks) == {h.label for h in held[:2]}  # held-out items without a picture: skipped
    assert all(1 <= r <= 7 for r in ranks.values())

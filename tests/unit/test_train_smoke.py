"""A tiny end-to-end training run on the real data beside the repository: losses fall,
checkpoints are written, a resumed run continues where it stopped, export + eval work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from synesthesia.train.data import data_root

from tests.shared_data import require

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "train" / "smoke.json"
DATA = "training data (set SYNESTHESIA_DATA)"


@pytest.fixture(scope="module", autouse=True)
def _needs_data() -> None:
    require(data_root() / "cifar10" / "cifar10_jpg_train_test.tar.gz", DATA)
    torch.set_num_threads(1)


def test_losses_fall_checkpoint_and_resume(tmp_path: Path) -> None:
    from synesthesia.train.config import TrainConfig
    from synesthesia.train.loop import ckpt_path, train_tower

    cfg = TrainConfig.load(CONFIG)
    half = cfg.image.steps // 2
    _, first = train_tower(cfg, "image", tmp_path, progress=False, stop_at=half)  # "interrupted"
    assert (
        torch.load(ckpt_path(tmp_path, "image"), weights_only=True)["step"] == cfg.image.steps // 2
    )
    model, rest = train_tower(cfg, "image", tmp_path, progress=False)  # resumes at the checkpoint
    assert len(rest) == cfg.image.steps - half
    losses = first + rest
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5
    # resuming is exact: a straight run reaches the same weights
    straight, _ = train_tower(cfg, "image", tmp_path / "straight", progress=False)
    a, b = model.image.state_dict(), straight.image.state_dict()  # type: ignore[union-attr]
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-5) for k in a)


def test_cli_trains_exports_and_evaluates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from synesthesia.models.minilm.weights import load_model
    from synesthesia.train.cli import eval_main, train_main

    out = tmp_path / "towers.safetensors"
    argv = [str(CONFIG), "--run-dir", str(tmp_path / "run"), "--export", str(out), "--no-progress"]
    assert train_main(argv) == 0
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "audio.log.jsonl").open()]
    assert losses and all(x == x for x in losses)  # logged, finite
    model, meta = load_model(out)
    assert model.image is not None and model.audio is not None and meta["revision"]
    # the config's anchor_tau asks for the training vocabulary as the audio head's text anchors
    anchors = model.audio.anchors
    assert anchors is not None and model.image.anchors is None
    assert len(anchors.texts) == anchors.vectors.shape[0] == model.cfg.audio.anchors > 100
    assert "a photo of a dog." in anchors.texts and "the sound of a rooster." in anchors.texts
    assert eval_main([str(out), "--limit", "40", "--json", str(tmp_path / "m.json")]) == 0
    table = capsys.readouterr().out
    assert "CIFAR-10 test zero-shot top-1" in table and "bark->photo" in table
    metrics = json.loads((tmp_path / "m.json").read_text())["metrics"]
    assert metrics["text parity max |diff| vs sentence-transformers"] <= 1e-5


def test_training_through_the_text_anchors_checkpoints_only_trained_weights(
    tmp_path: Path,
) -> None:
    import dataclasses

    from synesthesia.train.config import TrainConfig
    from synesthesia.train.loop import ckpt_path, train_tower

    cfg = TrainConfig.load(CONFIG)  # its audio tower has anchor_tau > 0
    stage = dataclasses.replace(
        cfg.audio, steps=2, ckpt_every=1, through_anchors=True, picture_weight=0, picture_ce=0
    )
    cfg = dataclasses.replace(cfg, audio=stage)
    model, losses = train_tower(cfg, "audio", tmp_path, progress=False, stop_at=1)
    assert model.audio is not None and model.audio.anchors is not None and len(losses) == 1
    saved = torch.load(ckpt_path(tmp_path, "audio"), weights_only=True)["tower"]
    assert saved and not [k for k in saved if k.startswith("anchors.")]  # rebuilt, not saved
    _, rest = train_tower(cfg, "audio", tmp_path, progress=False)  # resumes with the head
    assert len(rest) == 1 and all(x == x for x in rest)


def test_weight_average_resumes_exactly_and_is_what_the_run_exports(tmp_path: Path) -> None:
    import dataclasses

    from synesthesia.train.config import TrainConfig
    from synesthesia.train.loop import ckpt_path, load_trained, train_tower

    cfg = TrainConfig.load(CONFIG)
    cfg = dataclasses.replace(
        cfg, image=dataclasses.replace(cfg.image, steps=8, ckpt_every=4, ema=0.9)
    )
    train_tower(cfg, "image", tmp_path / "cut", progress=False, stop_at=4)  # "interrupted"
    train_tower(cfg, "image", tmp_path / "cut", progress=False)  # resumes the average too
    train_tower(cfg, "image", tmp_path / "straight", progress=False)
    cut = torch.load(ckpt_path(tmp_path / "cut", "image"), weights_only=True)
    straight = torch.load(ckpt_path(tmp_path / "straight", "image"), weights_only=True)
    assert set(cut["ema"]) == set(cut["tower"])
    assert all(torch.allclose(cut["ema"][k].float(), straight["ema"][k].float(), atol=1e-5)
               for k in cut["ema"])  # fmt: skip
    # the average is not the last weights, and it is what a trained run loads (and exports)
    moved = [k for k, v in cut["tower"].items() if v.is_floating_point()
             and not torch.allclose(v, cut["ema"][k], atol=1e-6)]  # fmt: skip
    assert moved
    loaded = load_trained(cfg, tmp_path / "cut", ("image",)).image.state_dict()  # type: ignore[union-attr]
    assert all(torch.equal(loaded[k], cut["ema"][k]) for k in cut["ema"])
    # a config that asks for an average cannot silently export a run that kept none
    plain = dataclasses.replace(cfg, image=dataclasses.replace(cfg.image, ema=0.0))
    train_tower(plain, "image", tmp_path / "plain", progress=False)
    with pytest.raises(RuntimeError, match="weight average"):
        load_trained(cfg, tmp_path / "plain", ("image",))


def test_weight_average_follows_its_formula() -> None:
    from synesthesia.train.loop import WeightAverage

    layer = torch.nn.BatchNorm1d(2)
    avg = WeightAverage(layer, 0.5)
    start = avg.state["weight"].clone()  # ones
    with torch.no_grad():
        layer.weight.fill_(3.0)
        layer.num_batches_tracked.fill_(7)
    avg.update(layer, step=100)  # past the ramp: decay 0.5
    assert torch.allclose(avg.state["weight"], 0.5 * start + 0.5 * 3.0)
    assert int(avg.state["num_batches_tracked"]) == 7  # integer buffers are copied
    avg.update(layer, step=0)  # the ramp: decay min(0.5, 1/10)
    assert torch.allclose(avg.state["weight"], torch.full((2,), 0.1 * 2.0 + 0.9 * 3.0))
    with pytest.raises(ValueError, match="ema"):
        WeightAverage(layer, 1.0)


def test_token_drop_hides_a_share_of_valid_tokens_and_keeps_one() -> None:
    from synesthesia.train.loop import drop_tokens

    gen = torch.Generator().manual_seed(0)
    valid = torch.arange(400)[None, :] < torch.tensor([400, 100, 1, 0])[:, None]
    kept = drop_tokens(valid, 0.3, gen)
    assert not (kept & ~valid).any()  # padding stays padding
    assert 0.6 < kept[0].float().mean() < 0.8 and 0.5 < kept[1, :100].float().mean() < 0.9
    assert kept[2, 0] and not kept[3].any()  # a one-token clip keeps it; an empty row stays empty
    assert kept.sum(1).ge(valid.any(1).long()).all()
    almost_all = drop_tokens(valid, 0.999, torch.Generator().manual_seed(1))
    assert almost_all[:3].sum(1).ge(1).all()  # every clip keeps at least one token
    assert torch.equal(drop_tokens(valid, 0.0, gen), valid)

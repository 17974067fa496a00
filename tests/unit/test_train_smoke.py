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
    report = json.loads((tmp_path / "m.json").read_text())
    assert report["metrics"]["text parity max |diff| vs sentence-transformers"] <= 1e-5
    # the open-world figures come first (the ImageNet sample's eval split, sound -> photo)
    assert table.index("ImageNet eval photo->label top-1 (374-way)") < table.index("CIFAR-10")
    assert "sound->photo MRR (mean over ESC classes)" in report["open_world"]
    assert eval_main([str(out), "--limit", "40", "--no-parity", "--open-world", "none",
                      "--no-anchors"]) == 0  # fmt: skip
    plain = capsys.readouterr().out
    assert "text-anchor heads removed" in plain and "open world" not in plain


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


def test_cli_seed_overrides_the_config_and_names_the_run(tmp_path: Path) -> None:
    from synesthesia.train.cli import train_main

    run = tmp_path / "run"
    assert train_main([str(CONFIG), "--modality", "image", "--seed", "3", "--run-dir", str(run),
                       "--no-progress"]) == 0  # fmt: skip
    saved = json.loads((run / "config.json").read_text())
    assert saved["seed"] == 3 and saved["name"] == "smoke-seed3"
    assert (run / "image.ckpt.pt").is_file()


def test_audio_stem_starts_from_the_trained_image_stem(tmp_path: Path) -> None:
    import dataclasses

    from synesthesia.models.minilm.preprocess import window_frames
    from synesthesia.train.config import TrainConfig
    from synesthesia.train.loop import build_model, init_audio_stem_from_image, train_tower

    cfg = TrainConfig.load(CONFIG)
    pictures, _ = train_tower(cfg, "image", tmp_path, progress=False, stop_at=2)
    like_image = dataclasses.replace(
        cfg.model.audio, channels=cfg.model.image.channels,
        blocks_per_stage=cfg.model.image.blocks_per_stage, patchify=True,
    )  # fmt: skip
    model = build_model(dataclasses.replace(cfg, model=dataclasses.replace(
        cfg.model, audio=like_image)), ("audio",))  # fmt: skip
    assert model.audio is not None and pictures.image is not None
    init_audio_stem_from_image(model.audio.stem, pictures.image.stem)  # type: ignore[arg-type]
    # a log-mel window read as a grey picture: the same response as the image stem's to the
    # window copied into R, G and B
    x = torch.randn(2, 1, 64, window_frames(like_image))
    model.audio.stem.eval()
    with torch.no_grad():
        got = model.audio.stem.body(x)
        want = pictures.image.stem.body(x.expand(-1, 3, -1, -1))
    assert got.shape[1] == cfg.model.image.channels[-1] and torch.allclose(got, want, atol=1e-4)
    # the tokens are one per 2^3 frames, as without patchify
    fb, frames = x[:, 0].transpose(1, 2), torch.tensor([498, 100])
    tokens, valid = model.audio.stem(fb, frames)
    assert tokens.shape[1] == 63 and valid.sum(1).tolist() == [63, 13]

    # a stem laid out otherwise is refused with the reason
    plain = build_model(cfg, ("audio",)).audio
    assert plain is not None
    with pytest.raises(ValueError, match="patchify: true, the same channels"):
        init_audio_stem_from_image(plain.stem, pictures.image.stem)  # type: ignore[arg-type]


def test_stem_learning_rate_factor(tmp_path: Path) -> None:
    import dataclasses

    from synesthesia.train.config import TrainConfig
    from synesthesia.train.loop import build_model, train_tower

    cfg = TrainConfig.load(CONFIG)
    stage = dataclasses.replace(
        cfg.audio, steps=3, warmup=1, picture_weight=0, picture_ce=0, stem_lr_scale=0.0
    )
    slow = dataclasses.replace(cfg, audio=stage)
    torch.manual_seed(slow.seed)
    start = build_model(slow, ("audio",))
    model, losses = train_tower(slow, "audio", tmp_path, progress=False)
    assert len(losses) == 3 and model.audio is not None and start.audio is not None
    a, b = start.audio.state_dict(), model.audio.state_dict()
    convs = [k for k in a if k.startswith("stem.body") and k.endswith("conv.weight")]
    assert convs and all(torch.equal(a[k], b[k]) for k in convs)  # factor 0: the stem stays put
    assert not torch.equal(a["stem.proj.weight"], b["stem.proj.weight"])  # the rest learns


def test_soup_averages_the_draws_of_one_recipe(tmp_path: Path) -> None:
    import dataclasses

    from synesthesia.train.config import TrainConfig
    from synesthesia.train.loop import ckpt_path, load_trained, soup_state, train_tower

    base = TrainConfig.load(CONFIG)
    cfg = dataclasses.replace(base, audio=dataclasses.replace(
        base.audio, steps=2, picture_weight=0, picture_ce=0))  # fmt: skip
    runs = []
    for seed in (0, 1):
        run = tmp_path / f"seed{seed}"
        drawn = dataclasses.replace(cfg, seed=seed, name=f"smoke-seed{seed}")
        train_tower(drawn, "audio", run, progress=False)
        (run / "config.json").write_text(drawn.to_json())
        runs.append(run)
    soup = soup_state(cfg, runs, "audio")
    a, b = (torch.load(ckpt_path(r, "audio"), weights_only=True)["tower"] for r in runs)
    key = "stem.proj.weight"
    assert not torch.equal(a[key], b[key]) and torch.allclose(soup[key], (a[key] + b[key]) / 2)
    # the exported model carries the soup
    model = load_trained(cfg, runs[0], ("audio",), soup=(runs[1],))
    assert model.audio is not None and torch.equal(model.audio.state_dict()[key], soup[key])
    # another recipe is refused
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(dataclasses.replace(cfg, audio=dataclasses.replace(
        cfg.audio, lr=0.1)).to_json())  # fmt: skip
    with pytest.raises(ValueError, match="another recipe"):
        soup_state(cfg, [runs[0], other], "audio")


def test_anchor_vocabulary_is_class_prompts_unless_captions_are_asked_for() -> None:
    from synesthesia.train import data
    from synesthesia.train.anchors import anchor_vocabulary

    prompts = set(anchor_vocabulary())
    assert {"the sound of a rooster.", "a photo of a dog."} <= prompts
    captions = {t.caption for t in data.tux_items(held_out=False)}
    left_out = captions - prompts  # empty if the default took the captions in
    assert len(left_out) > 50
    assert left_out | prompts <= set(anchor_vocabulary(captions=True, gallery=False))

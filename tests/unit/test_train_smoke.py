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


def test_cli_seed_overrides_the_config_and_names_the_run(tmp_path: Path) -> None:
    from synesthesia.train.cli import train_main

    run = tmp_path / "run"
    assert train_main([str(CONFIG), "--modality", "image", "--seed", "3", "--run-dir", str(run),
                       "--no-progress"]) == 0  # fmt: skip
    saved = json.loads((run / "config.json").read_text())
    assert saved["seed"] == 3 and saved["name"] == "smoke-seed3"
    assert (run / "image.ckpt.pt").is_file()

"""ImageBind towers against the reference's golden outputs (../shared/golden/imagebind_a)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from synesthesia.models import create_model
from synesthesia.models.imagebind import IMAGEBIND_HUGE, ImageBindConfig, ImageBindModel
from synesthesia.models.imagebind.layers import set_fused_attention

from tests.shared_data import require

torch.set_num_threads(2)


def golden_dir() -> Path:
    root = Path(os.environ.get("SYNESTHESIA_SHARED", Path(__file__).parents[2].parent / "shared"))
    path = root / "golden"
    require(path / "imagebind_a" / "weights.pth", "golden files")
    return path


INPUT_MODALITY = {
    "vision_rand": "vision",
    "video_rand": "vision",
    "vision_real": "vision",
    "text_rand": "text",
    "text_real": "text",
    "audio_rand": "audio",
    "audio_rand_1clip": "audio",
    "audio_real": "audio",
}


@pytest.fixture(scope="module")
def golden() -> Path:
    return golden_dir() / "imagebind_a"


@pytest.fixture(scope="module")
def model(golden: Path) -> ImageBindModel:
    cfg = ImageBindConfig.from_json(golden / "config.json")
    state = torch.load(golden / "weights.pth", weights_only=True)
    m = ImageBindModel(cfg).eval()
    ours = m.state_dict()
    # the golden file holds all six modalities; we build three: ours must be exactly its slice
    assert list(ours) == [k for k in state if k.split(".")[1] in m.modalities]
    m.load_state_dict({k: state[k] for k in ours}, strict=True)
    return m


@pytest.mark.parametrize("key", sorted(INPUT_MODALITY))
def test_outputs_match_reference(model: ImageBindModel, golden: Path, key: str) -> None:
    inputs, outputs = np.load(golden / "model_inputs.npz"), np.load(golden / "model_outputs.npz")
    with torch.no_grad():
        ours = model(INPUT_MODALITY[key], torch.from_numpy(inputs[key])).numpy()
    expected = outputs[key]
    assert ours.shape == expected.shape
    diff = np.abs(ours - expected).max()
    assert diff <= 1e-4, f"{key}: max abs diff {diff:.3g}"  # measured: <= 5.5e-6
    # the README's relative criterion as well (rows have norm 1, 19.28 or ~20)
    rel = (np.abs(ours - expected).max(1) / np.linalg.norm(expected, axis=1)).max()
    assert rel <= 1e-5


def test_audio_per_clip_and_intermediates(model: ImageBindModel, golden: Path) -> None:
    inputs, outputs = np.load(golden / "model_inputs.npz"), np.load(golden / "model_outputs.npz")
    clips = torch.from_numpy(inputs["audio_real"]).reshape(-1, 1, 128, 204)
    inter = np.load(golden / "model_intermediates.npz")
    with torch.no_grad():
        assert np.abs(model("audio", clips).numpy() - outputs["audio_real_perclip"]).max() <= 1e-4
        for m in ("vision", "text", "audio"):
            x = torch.from_numpy(inter[f"{m}_input"])
            tokens = model.modality_preprocessors[m](x)
            scale = np.abs(inter[f"{m}_tokens"]).max()
            assert np.abs(tokens.numpy() - inter[f"{m}_tokens"]).max() <= 1e-5 * scale
            mask = model.modality_preprocessors["text"].mask if m == "text" else None
            trunk = model.modality_trunks[m](tokens, mask).numpy()
            scale = np.abs(inter[f"{m}_trunk_out"]).max()
            assert np.abs(trunk - inter[f"{m}_trunk_out"]).max() <= 1e-5 * scale


def test_plain_attention_path_gives_same_numbers(model: ImageBindModel, golden: Path) -> None:
    inputs = np.load(golden / "model_inputs.npz")
    outputs = np.load(golden / "model_outputs.npz")
    try:
        set_fused_attention(model, False)
        with torch.no_grad():
            for key in ("vision_rand", "text_rand", "audio_rand_1clip"):
                ours = model(INPUT_MODALITY[key], torch.from_numpy(inputs[key])).numpy()
                assert np.abs(ours - outputs[key]).max() <= 1e-4
    finally:
        set_fused_attention(model, True)


def test_embedder_strips_scale_and_averages_clips(golden: Path) -> None:
    emb = create_model(
        "imagebind-test", checkpoint=golden / "weights.pth", config=golden / "config.json"
    )
    inputs, outputs = np.load(golden / "model_inputs.npz"), np.load(golden / "model_outputs.npz")
    from synesthesia.models.embedder import Prepared

    for modality, key in (("text", "text_real"), ("image", "vision_real"), ("audio", "audio_real")):
        prepared = [Prepared(inputs={"x": torch.from_numpy(row)}) for row in inputs[key]]
        calls = emb.forward_calls
        vecs = emb.encode(modality, prepared)
        assert emb.forward_calls == calls + 1  # one forward for the whole batch
        expected = outputs[key] / np.linalg.norm(outputs[key], axis=1, keepdims=True)
        assert vecs.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-6)
        assert np.abs(vecs - expected).max() <= 1e-5


def huge_keys(golden_root: Path) -> dict[str, tuple[int, ...]]:
    rows = (golden_root / "imagebind_huge_keys.tsv").read_text().splitlines()[1:]
    out = {}
    for row in rows:
        key, shape, _dtype = row.split("\t")
        out[key] = tuple(int(s) for s in shape.strip("[]").split(",") if s.strip())
    return out


def test_huge_config_has_official_keys_and_shapes() -> None:
    expected = huge_keys(golden_dir())
    with torch.device("meta"):  # 4.5 GB of shapes, no memory
        model = ImageBindModel(IMAGEBIND_HUGE)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    built = {k: v for k, v in expected.items() if k.split(".")[1] in ("vision", "text", "audio")}
    assert list(ours) == list(built)  # every key, in the official order
    assert ours == built
    counts = {m: sum(k.split(".")[1] == m for k in ours) for m in ("vision", "text", "audio")}
    assert counts == {"vision": 392, "text": 295, "audio": 177}  # of the 1311 official keys

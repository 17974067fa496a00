"""ONNX export per modality (``synesthesia export onnx``): onnxruntime on the exported graph
matches the torch path within 1e-4 on the golden inputs, at a batch size other than the one
traced. ImageBind: the golden set A model (tiny, its weights); synesthesia-minilm: the shipped
weights on the golden set's real media (texts, images, sounds)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from synesthesia.export.onnx import export_main, export_onnx, onnx_outputs
from synesthesia.modality import Modality
from synesthesia.models import create_model
from synesthesia.models.embedder import Prepared, l2_normalize

from tests.unit.test_imagebind_model import golden_dir

pytest.importorskip("onnxruntime")
torch.set_num_threads(2)

GOLDEN_INPUT = {
    Modality.TEXT: "text_real",
    Modality.IMAGE: "vision_real",
    Modality.AUDIO: "audio_real",
}


def golden_media(modality: Modality) -> list[str | bytes]:
    """The real texts, images and sounds behind golden set A (../shared/data)."""
    root = golden_dir() / "imagebind_a"
    manifest = json.loads((root / "manifest.json").read_text())
    if modality is Modality.TEXT:
        return [t["text"] for t in manifest["texts"]]
    entries = manifest["images" if modality is Modality.IMAGE else "audios"]
    return [(root.parents[2] / e["path"]).read_bytes() for e in entries]


@pytest.mark.parametrize("modality", list(Modality))
def test_imagebind_onnx_matches_torch_on_golden_inputs(modality: Modality, tmp_path: Path) -> None:
    golden = golden_dir() / "imagebind_a"
    emb = create_model(
        "imagebind-test",
        checkpoint=golden / "weights.pth",
        config=golden / "config.json",
        modalities=[modality],
    )
    graph = export_onnx(emb, modality, tmp_path / "tower.onnx")  # traced at batch 2
    rows = torch.from_numpy(np.load(golden / "model_inputs.npz")[GOLDEN_INPUT[modality]])
    ours = onnx_outputs(tmp_path / "tower.onnx", graph, [rows])
    served = emb.encode(modality, [Prepared(inputs={"x": row}) for row in rows])
    assert ours.shape == served.shape and ours.dtype == np.float32
    assert np.abs(ours - served).max() <= 1e-4
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


@pytest.fixture(scope="module")
def minilm():  # type: ignore[no-untyped-def]
    return create_model("synesthesia-minilm")


@pytest.mark.parametrize("modality", list(Modality))
def test_minilm_onnx_matches_torch_on_golden_media(  # type: ignore[no-untyped-def]
    minilm, modality: Modality, tmp_path: Path
) -> None:
    graph = export_onnx(minilm, modality, tmp_path / "tower.onnx")
    items = [m for m in golden_media(modality) if m != ""]  # minilm refuses an empty text
    prepared = [minilm.prepare(modality, item) for item in items]
    served = minilm.encode(modality, prepared)
    if modality is Modality.TEXT:
        seqs = [p.inputs["ids"] for p in prepared]
        ids = torch.zeros(len(seqs), max(len(s) for s in seqs), dtype=torch.long)
        valid = torch.zeros(ids.shape, dtype=torch.bool)
        for i, s in enumerate(seqs):
            ids[i, : len(s)], valid[i, : len(s)] = s, True
        ours = onnx_outputs(tmp_path / "tower.onnx", graph, [ids, valid])
    elif modality is Modality.IMAGE:
        pixels = torch.stack([p.inputs["pixels"] for p in prepared])
        ours = onnx_outputs(tmp_path / "tower.onnx", graph, [pixels])
    else:
        from synesthesia.models.minilm.preprocess import busiest_excerpts

        a = minilm.cfg.audio
        fbank = torch.cat([p.inputs["fbank"] for p in prepared])
        frames = torch.cat([p.inputs["frames"] for p in prepared])
        size = max(1, round(a.busy_view_seconds * 1000 / a.frame_shift_ms))
        inputs = [fbank, frames, *busiest_excerpts(fbank, frames, size)]
        per_window = onnx_outputs(tmp_path / "tower.onnx", graph, inputs[: len(graph.inputs)])
        bounds = np.cumsum([0] + [p.windows for p in prepared])
        clips = [per_window[s:e].mean(0) for s, e in itertools.pairwise(bounds)]
        ours = l2_normalize(np.stack(clips))
    assert ours.shape == served.shape
    assert np.abs(ours - served).max() <= 1e-4


def test_export_cli_writes_and_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "image.onnx"
    assert export_main(["--model", "imagebind-test", "--modality", "image", "--out", str(out)]) == 0
    assert out.stat().st_size > 0
    assert "max abs diff" in capsys.readouterr().out
    assert export_main(["--model", "no-such", "--modality", "image", "--out", str(out)]) == 2
    # the same through the `synesthesia` command
    from synesthesia.apps.cli import main

    text = tmp_path / "text.onnx"
    argv = ["export", "onnx", "--model", "imagebind-test", "--modality", "text", "--out", str(text)]
    assert main(argv) == 0 and text.stat().st_size > 0
    assert main(["export", "tflite"]) == 2

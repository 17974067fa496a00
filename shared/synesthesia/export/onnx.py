"""ONNX export of one modality's tower, for both model families.

The graph starts at the model's input tensors (what ``Embedder.prepare`` produces, after
decoding and preprocessing) and ends at the unit-norm float32 vectors ``Embedder.encode``
returns, with a dynamic batch axis:

==============  =====================================  ================================
family          inputs                                 output
==============  =====================================  ================================
imagebind-*     image ``pixels`` [B,3,224,224] f32     ``embedding`` [B, dim]
                text ``input_ids`` [B,77] int64
                audio ``clips`` [B,3,1,128,204] f32    (the clip mean, re-normalised)
minilm text     ``input_ids``, ``valid`` [B,N]         ``embedding`` [B, 384]
minilm image    ``pixels`` [B,3,S,S] f32               ``embedding`` [B, 384]
minilm audio    ``fbank`` [W,T,M], ``frames`` [W],     ``embedding`` [W, 384], one vector
                ``busy``, ``busy_frames`` (the         per window: a clip's vector is the
                busiest excerpts, when configured)     normalised mean of its windows'
==============  =====================================  ================================

Decoding, resampling, tokenising and (minilm audio) windowing and excerpting stay in Python:
``Embedder.prepare`` and ``synesthesia.models.minilm.preprocess.busiest_excerpts``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from synesthesia.errors import SynesthesiaError
from synesthesia.modality import Modality
from synesthesia.models import Embedder, create_model
from synesthesia.models.imagebind.model import ImageBindModel
from synesthesia.models.minilm.model import SynesthesiaMiniLM, Tower

log = logging.getLogger(__name__)
DEFAULT_OPSET = 17


@dataclass
class OnnxGraph:
    """What is exported: a module over model input tensors, example inputs to trace it with,
    and the names and dynamic axes of its inputs and output."""

    module: nn.Module
    inputs: tuple[torch.Tensor, ...]
    input_names: list[str]
    dynamic_axes: dict[str, dict[int, str]]
    output_name: str = "embedding"

    def torch_outputs(self, inputs: Sequence[torch.Tensor] | None = None) -> np.ndarray:
        with torch.inference_mode():
            out: torch.Tensor = self.module(*(inputs or self.inputs))
        return out.float().numpy()


class _ImageBindTower(nn.Module):
    def __init__(self, model: ImageBindModel, tower: str) -> None:
        super().__init__()
        self.model, self.tower = model, tower

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.model(self.tower, x).float(), dim=-1)


class _MiniLMText(nn.Module):
    def __init__(self, model: SynesthesiaMiniLM) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.model.encode_text(ids, valid)
        return out


class _MiniLMImage(nn.Module):
    def __init__(self, model: SynesthesiaMiniLM) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.model.encode_image(pixels)
        return out


class _MiniLMAudio(nn.Module):
    """``read_out_audio`` with the busiest excerpts given as inputs (computed in Python)."""

    def __init__(self, model: SynesthesiaMiniLM) -> None:
        super().__init__()
        assert model.audio is not None, "audio weights not loaded"
        self.model = model
        self.tower: Tower = model.audio
        self.weight = model.cfg.audio.busy_view_weight

    def embed(self, fbank: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        tokens, valid = self.tower.stem(fbank, frames)
        out: torch.Tensor = self.tower.embed(tokens, valid, self.model.backbone)
        return out

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        whole = self.embed(args[0], args[1])
        if len(args) == 2:
            return whole
        w = self.weight
        return F.normalize(w * whole + (1.0 - w) * self.embed(args[2], args[3]), dim=-1)


def _text_ids(embedder: Any, texts: Sequence[str]) -> list[torch.Tensor]:
    """Token ids as the family's ``prepare`` makes them (key "x" or "ids")."""
    return [next(iter(embedder.prepare(Modality.TEXT, t).inputs.values())) for t in texts]


def imagebind_graph(embedder: Any, modality: Modality) -> OnnxGraph:
    from synesthesia.models.imagebind.embedder import TOWER

    cfg = embedder.model.config
    gen = torch.Generator().manual_seed(0)
    if modality is Modality.TEXT:
        ids = torch.stack(_text_ids(embedder, ["a dog.", "the sound of rain on a tin roof"]))
        x, name = ids, "input_ids"
    elif modality is Modality.IMAGE:
        x, name = torch.randn(2, 3, cfg.image_size, cfg.image_size, generator=gen), "pixels"
    else:
        shape = (2, 3, 1, cfg.audio_num_mel_bins, cfg.audio_target_len)
        x, name = torch.randn(*shape, generator=gen), "clips"
    module = _ImageBindTower(embedder.model, TOWER[modality])
    return OnnxGraph(module, (x,), [name], {name: {0: "batch"}, "embedding": {0: "batch"}})


def minilm_graph(embedder: Any, modality: Modality) -> OnnxGraph:
    """Example inputs exercise the padding paths (a short text, a short audio window), so the
    traced graph masks padding for any input."""
    from synesthesia.models.minilm.preprocess import audio_to_windows, busiest_excerpts

    model, cfg = embedder.model, embedder.cfg
    gen = torch.Generator().manual_seed(0)
    if modality is Modality.TEXT:
        seqs = _text_ids(embedder, ["a dog.", "the sound of rain falling on a tin roof at night"])
        ids = torch.zeros(len(seqs), max(len(s) for s in seqs), dtype=torch.long)
        valid = torch.zeros(ids.shape, dtype=torch.bool)
        for i, s in enumerate(seqs):
            ids[i, : len(s)], valid[i, : len(s)] = s, True
        tokens = {0: "batch", 1: "tokens"}
        return OnnxGraph(
            _MiniLMText(model),
            (ids, valid),
            ["input_ids", "valid"],
            {"input_ids": tokens, "valid": tokens, "embedding": {0: "batch"}},
        )
    if modality is Modality.IMAGE:
        s = cfg.image.image_size
        pixels = torch.randn(2, 3, s, s, generator=gen)
        batch_axes = {"pixels": {0: "batch"}, "embedding": {0: "batch"}}
        return OnnxGraph(_MiniLMImage(model), (pixels,), ["pixels"], batch_axes)
    a = cfg.audio
    wave = np.random.default_rng(0).normal(0, 0.1, int(a.window_seconds * a.sample_rate_hz))
    t = audio_to_windows(wave.astype(np.float32), a)[0].shape[1]  # frames in a window
    frames = torch.tensor([t, t // 3])  # a full window (no trimming) and a padded one
    fbank = torch.randn(2, t, a.num_mel_bins, generator=gen) * (frames[:, None, None] > 0)
    inputs: tuple[torch.Tensor, ...] = (fbank, frames)
    names = ["fbank", "frames"]
    if a.busy_view_seconds > 0:
        size = max(1, round(a.busy_view_seconds * 1000 / a.frame_shift_ms))
        inputs += busiest_excerpts(fbank, frames, size)
        names += ["busy", "busy_frames"]
    axes = {n: {0: "windows"} for n in [*names, "embedding"]}
    return OnnxGraph(_MiniLMAudio(model), inputs, names, axes)


def graph_for(embedder: Embedder, modality: Modality | str) -> OnnxGraph:
    from synesthesia.models.imagebind.embedder import ImageBindEmbedder
    from synesthesia.models.minilm.embedder import MiniLMEmbedder

    m = embedder.check_modality(modality)
    if isinstance(embedder, ImageBindEmbedder):
        graph = imagebind_graph(embedder, m)
    elif isinstance(embedder, MiniLMEmbedder):
        graph = minilm_graph(embedder, m)
    else:
        raise SynesthesiaError(f"no ONNX export for {type(embedder).__name__}")
    graph.module.eval()
    return graph


def export_onnx(
    embedder: Embedder, modality: Modality | str, out: str | Path, opset: int = DEFAULT_OPSET
) -> OnnxGraph:
    """Write ``modality``'s tower of ``embedder`` (fp32, on the CPU) to ``out``."""
    graph = graph_for(embedder, modality)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(
            graph.module,
            graph.inputs,
            str(out),
            input_names=graph.input_names,
            output_names=[graph.output_name],
            dynamic_axes=graph.dynamic_axes,  # type: ignore[arg-type]
            opset_version=opset,
            dynamo=False,  # the TorchScript exporter: no onnxscript needed, dynamic axes as named
        )
    return graph


def onnx_outputs(path: str | Path, graph: OnnxGraph, inputs: Sequence[torch.Tensor]) -> np.ndarray:
    """The exported graph's output under onnxruntime (CPU)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {n: t.numpy() for n, t in zip(graph.input_names, inputs, strict=True)}
    out: np.ndarray = session.run([graph.output_name], feed)[0]
    return out


def export_main(argv: Sequence[str] | None = None) -> int:
    """``synesthesia export onnx``: returns the exit status."""
    ap = argparse.ArgumentParser(
        prog="synesthesia export onnx",
        description="Export one modality's tower (model input tensors -> unit vectors) to ONNX.",
    )
    ap.add_argument("--model", default="synesthesia-minilm", help="registry name")
    ap.add_argument("--checkpoint", help="local weights path (imagebind-huge needs one)")
    ap.add_argument("--config", help="imagebind-test only: architecture JSON")
    ap.add_argument("--modality", required=True, choices=[m.value for m in Modality])
    ap.add_argument("--out", required=True, type=Path, help="the .onnx file to write")
    ap.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    ap.add_argument(
        "--no-check", action="store_true", help="skip the onnxruntime parity check on export"
    )
    args = ap.parse_args(argv)
    kwargs: dict[str, Any] = {"modalities": [args.modality]}
    if args.checkpoint:
        kwargs["checkpoint"] = args.checkpoint
    if args.config:
        kwargs["config"] = args.config
    try:
        embedder = create_model(args.model, **kwargs)
        t0 = time.perf_counter()
        graph = export_onnx(embedder, args.modality, args.out, args.opset)
    except SynesthesiaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    took = time.perf_counter() - t0
    inputs = ", ".join(graph.input_names)
    print(f"wrote {args.out} ({embedder.info().model_id}, {args.modality}, inputs {inputs}) "
          f"in {took:.1f} s")  # fmt: skip
    if not args.no_check:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            print("no onnxruntime: skipped the check (pip install 'synesthesia[onnx]')")
            return 0
        diff = np.abs(onnx_outputs(args.out, graph, graph.inputs) - graph.torch_outputs()).max()
        print(f"onnxruntime vs torch on the example inputs: max abs diff {diff:.2e}")
        if diff > 1e-4:
            print("error: the exported graph does not match the torch path", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(export_main())

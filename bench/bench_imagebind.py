"""Throughput and accuracy of ImageBind-Huge serving options on this CPU (random weights in the
huge configuration, no checkpoint needed).

For each modality and batch size, every option runs the same inputs (the golden set A's real
model inputs: ``vision_real``, ``text_real``, ``audio_real``, repeated to fill a batch) in the
same process, timed in alternation (one call of each option per round) so machine noise hits
all alike; items/s is the batch over the median call time. Accuracy is the cosine of each
item's vector to the plain fp32 path's (min over the batch). One audio item is three 2-second
clips (the model runs 3x the batch). Options:

* ``fp32``: the plain fp32 path (fp32 weights, fused ``scaled_dot_product_attention``, eager),
  what a service with ``precision: fp32`` runs; the baseline of every ratio.
* ``fp32-noSDPA``: fp32 with an explicit softmax(QK^T)V (what fusing attention buys).
* ``bf16``: weights and activations in bfloat16 (``model.to(torch.bfloat16)``), SDPA: what a
  service with ``precision: bf16`` runs.
* ``autocast``: fp32 weights under ``torch.autocast("cpu", torch.bfloat16)``.
* ``bf16-cl``: bf16 with the conv stem's weights and input channels-last (vision, audio).
* ``bf16-compile``: ``torch.compile`` of the bf16 model (inductor; compile time not counted).
* ``int8``: ``torch.ao.quantization.quantize_dynamic`` of every nn.Linear (int8 weights, fp32
  activations; the attention's in-projection is a raw parameter and stays fp32).

    .venv/bin/python bench/bench_imagebind.py                               # ~25 min, 2 cores
    .venv/bin/python bench/bench_imagebind.py --modalities audio --batches 8 --rounds 1
    .venv/bin/python bench/bench_imagebind.py --config test                 # smoke test
"""

from __future__ import annotations

import argparse
import copy
import gc
import math
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from synesthesia.models.imagebind import IMAGEBIND_HUGE, IMAGEBIND_TEST, ImageBindModel
from synesthesia.models.imagebind.layers import set_fused_attention
from torch import nn

GOLDEN = Path(__file__).resolve().parents[2] / "shared" / "golden" / "imagebind_a"
GOLDEN_KEY = {"vision": "vision_real", "text": "text_real", "audio": "audio_real"}
OPTIONS = ("fp32", "fp32-noSDPA", "bf16", "autocast", "bf16-cl", "bf16-compile", "int8")
DEFAULT_OPTIONS = ("fp32", "fp32-noSDPA", "bf16", "autocast", "bf16-cl", "int8")
Call = Callable[[torch.Tensor], torch.Tensor]


def random_tower(modality: str, config_name: str) -> ImageBindModel:
    """One tower with small random weights (std 0.02, LayerNorm 1/0); built on meta, then
    materialised once (default init of 630 M parameters takes minutes on 2 cores)."""
    cfg = IMAGEBIND_HUGE if config_name == "huge" else IMAGEBIND_TEST
    with torch.device("meta"):
        model = ImageBindModel(cfg, [modality])
    model = model.to_empty(device="cpu")
    gen = torch.Generator().manual_seed(0)
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if isinstance(module, nn.LayerNorm):
                p.data.fill_(1.0 if name == "weight" else 0.0)
            else:
                p.data.normal_(0.0, 0.02, generator=gen)
    if modality == "text":
        pre = model.modality_preprocessors["text"]
        pre.mask.copy_(torch.full_like(pre.mask, float("-inf")).triu_(1))
    for post in model.modality_postprocessors.values():
        for name, b in post.named_buffers():
            if name.endswith("log_logit_scale"):
                b.fill_(math.log(cfg.audio_logit_scale))
    return model.eval().requires_grad_(False)


def golden_batch(modality: str, batch: int) -> torch.Tensor:
    rows = torch.from_numpy(np.load(GOLDEN / "model_inputs.npz")[GOLDEN_KEY[modality]])
    reps = -(-batch // rows.shape[0])
    return rows.repeat(reps, *([1] * (rows.ndim - 1)))[:batch].contiguous()


def _half(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.bfloat16) if x.is_floating_point() else x


def _channels_last(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv3d):
            m.weight.data = m.weight.data.contiguous(memory_format=torch.channels_last_3d)
        elif isinstance(m, nn.Conv2d):
            m.weight.data = m.weight.data.contiguous(memory_format=torch.channels_last)


def build_option(name: str, fp32: ImageBindModel, modality: str) -> Call | None:
    """The option's forward (None where it does not apply); copies the fp32 model as needed."""

    def fused(model: ImageBindModel, on: bool, cast: bool = False) -> Call:
        def call(x: torch.Tensor) -> torch.Tensor:
            set_fused_attention(model, on)
            return model(modality, _half(x) if cast else x)

        return call

    if name == "fp32":
        return fused(fp32, True)
    if name == "fp32-noSDPA":
        return fused(fp32, False)
    if name == "autocast":

        def autocast(x: torch.Tensor) -> torch.Tensor:
            set_fused_attention(fp32, True)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return fp32(modality, x)

        return autocast
    if name == "int8":
        q = torch.ao.quantization.quantize_dynamic(copy.deepcopy(fp32), {nn.Linear}, torch.qint8)
        return fused(q, True)
    bf16 = copy.deepcopy(fp32).to(torch.bfloat16)
    if name == "bf16":
        return fused(bf16, True, cast=True)
    if name == "bf16-cl":
        if modality == "text":
            return None
        _channels_last(bf16)  # a 1-channel audio input is channels-last as it is
        if modality == "audio":
            return lambda x: bf16(modality, _half(x))
        return lambda x: bf16(modality, _half(x).contiguous(memory_format=torch.channels_last))
    if name == "bf16-compile":
        compiled = torch.compile(bf16, dynamic=False)
        return lambda x: compiled(modality, _half(x))
    raise ValueError(f"unknown option {name!r}; one of {OPTIONS}")


def matmul_gflops(dtype: torch.dtype, n: int = 1024, reps: int = 8) -> float:
    """What the cores give a plain matmul right now (the machine is shared: on idle cores with
    2 threads this CPU does ~160 GFLOP/s fp32, ~720 bf16)."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e9


def machine_now() -> str:
    fp32, bf16 = matmul_gflops(torch.float32), matmul_gflops(torch.bfloat16)
    return f"load {os.getloadavg()[0]:.1f}, matmul {fp32:.0f} GFLOP/s fp32 / {bf16:.0f} bf16"


def min_cosine(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float(F.cosine_similarity(out.float(), ref.float(), dim=-1).min())


def run_modality(
    modality: str, args: argparse.Namespace, rows: list[tuple[str, int, str, float, float]]
) -> None:
    t0 = time.perf_counter()
    fp32 = random_tower(modality, args.config)
    calls = {n: c for n in args.options if (c := build_option(n, fp32, modality)) is not None}
    print(f"{modality}: built {len(calls)} options in {time.perf_counter() - t0:.0f} s", flush=True)
    for batch in args.batches:
        x = golden_batch(modality, batch)
        with torch.inference_mode():
            outs = {name: call(x) for name, call in calls.items()}  # warm-up (and compile)
            times: dict[str, list[float]] = {name: [] for name in calls}
            for _ in range(args.rounds):
                for name, call in calls.items():
                    t = time.perf_counter()
                    call(x)
                    times[name].append(time.perf_counter() - t)
        for name in calls:
            ips = batch / statistics.median(times[name])
            cos = min_cosine(outs[name], outs["fp32"])
            rows.append((modality, batch, name, ips, cos))
            print(f"  {modality} b{batch} {name}: {ips:.3f} items/s, min cos {cos:.6f}", flush=True)
    del calls, fp32
    gc.collect()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modalities", nargs="+", default=["text", "audio", "vision"])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    ap.add_argument("--options", nargs="+", default=list(DEFAULT_OPTIONS), choices=OPTIONS)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2, help="timed calls of each option")
    ap.add_argument("--config", choices=["huge", "test"], default="huge")
    args = ap.parse_args()
    if "fp32" not in args.options:
        args.options.insert(0, "fp32")
    torch.set_num_threads(args.threads)

    rows: list[tuple[str, int, str, float, float]] = []
    t_start, at_start = time.perf_counter(), machine_now()
    print(f"start: {at_start}", flush=True)
    for modality in args.modalities:
        run_modality(modality, args, rows)

    base = {(m, b): ips for m, b, n, ips, _ in rows if n == "fp32"}
    print(
        f"\nImageBind-{args.config}, random weights, golden set A inputs, {args.threads} torch "
        f"threads, median of {args.rounds} timed call(s) after one warm-up, torch "
        f"{torch.__version__}, {time.perf_counter() - t_start:.0f} s total, {os.cpu_count()} "
        f"cores; at the start: {at_start}; at the end: {machine_now()}\n"
    )
    print("| modality | batch | option | items/s | vs fp32 | min cosine to fp32 |")
    print("|---|---:|---|---:|---:|---:|")
    for m, b, name, ips, cos in rows:
        print(f"| {m} | {b} | {name} | {ips:.2f} | {ips / base[(m, b)]:.2f}x | {cos:.5f} |")


if __name__ == "__main__":
    main()

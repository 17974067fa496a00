"""Throughput of the ImageBind-Huge towers on this CPU (random weights, no checkpoint needed).

For each modality, dtype (fp32, bf16) and batch size, measures items/s with the fused
``F.scaled_dot_product_attention`` path and with a plain softmax(QK^T)V path, in the same
process, timed in alternation so machine noise hits both paths alike. One audio item is three
2-second clips (the model runs 3x the batch). Prints a markdown table.

    .venv/bin/python bench/bench_imagebind.py                     # all: ~10 min on 2 idle cores
    .venv/bin/python bench/bench_imagebind.py --modalities audio --batches 1 --min-seconds 1
"""

from __future__ import annotations

import argparse
import gc
import math
import time
from collections.abc import Callable
from functools import partial

import torch
from synesthesia.models.imagebind import IMAGEBIND_HUGE, ImageBindModel
from synesthesia.models.imagebind.layers import set_fused_attention
from torch import nn


def huge_tower(modality: str, dtype: torch.dtype) -> ImageBindModel:
    """One huge tower with small random weights; built on meta, then materialised once
    (default init of 630 M parameters would take minutes on 2 cores)."""
    with torch.device("meta"):
        model = ImageBindModel(IMAGEBIND_HUGE, [modality])
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
                b.fill_(math.log(IMAGEBIND_HUGE.audio_logit_scale))
    return model.to(dtype).eval().requires_grad_(False)


def make_input(modality: str, batch: int, dtype: torch.dtype) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    if modality == "vision":
        return torch.randn(batch, 3, 224, 224, generator=gen).to(dtype)
    if modality == "audio":
        return torch.randn(batch, 3, 1, 128, 204, generator=gen).to(dtype)
    ids = torch.randint(1, 49406, (batch, 77), generator=gen)
    ids[:, 0], ids[:, 20], ids[:, 21:] = 49406, 49407, 0  # typical short caption
    return ids


def time_alternating(
    model: ImageBindModel, call: Callable[[], object], min_seconds: float, max_iters: int
) -> dict[bool, float]:
    """Median seconds per call for the fused (True) and plain (False) paths, timed in
    alternation (fused, plain, fused, ...) for up to ``max_iters`` rounds, stopping once a
    round ends after ``min_seconds``."""
    times: dict[bool, list[float]] = {True: [], False: []}
    start = time.perf_counter()
    for _ in range(max_iters):
        for fused in (True, False):
            set_fused_attention(model, fused)
            t0 = time.perf_counter()
            call()
            times[fused].append(time.perf_counter() - t0)
        if time.perf_counter() - start >= min_seconds:
            break
    return {k: sorted(v)[len(v) // 2] for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modalities", nargs="+", default=["text", "audio", "vision"])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    ap.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--min-seconds", type=float, default=2.0, help="stop timing after this")
    ap.add_argument("--max-iters", type=int, default=3, help="rounds of fused+plain")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    rows = []
    t_start = time.perf_counter()
    for modality in args.modalities:
        for dtype_name in args.dtypes:
            dtype = getattr(torch, dtype_name)
            model = huge_tower(modality, dtype)
            with torch.inference_mode():  # warm-up both paths once, at batch 1
                for fused in (True, False):
                    set_fused_attention(model, fused)
                    model(modality, make_input(modality, 1, dtype))
            for batch in args.batches:
                x = make_input(modality, batch, dtype)
                with torch.inference_mode():
                    per_path = time_alternating(
                        model, partial(model, modality, x), args.min_seconds, args.max_iters
                    )
                fused_ips, plain_ips = batch / per_path[True], batch / per_path[False]
                rows.append((modality, dtype_name, batch, fused_ips, plain_ips))
                print(
                    f"  {modality} {dtype_name} b{batch}: fused {fused_ips:.2f} items/s, "
                    f"plain {plain_ips:.2f} items/s",
                    flush=True,
                )
            model = None  # free this tower before building the next
            gc.collect()

    print(
        f"\nImageBind-Huge, random weights, {args.threads} torch threads, "
        f"torch {torch.__version__}, {time.perf_counter() - t_start:.0f} s total\n"
    )
    print("| modality | dtype | batch | fused items/s | plain items/s | fused speedup |")
    print("|---|---|---:|---:|---:|---:|")
    for modality, dtype_name, batch, fused, plain in rows:
        print(
            f"| {modality} | {dtype_name} | {batch} | {fused:.2f} | {plain:.2f} "
            f"| {fused / plain:.2f}x |"
        )


if __name__ == "__main__":
    main()

"""bf16 against fp32 for the default model (``synesthesia-minilm``, the shipped weights): the
cosine of each item's bf16 vector to its fp32 vector, on the real media behind the golden set A
(../shared/golden/imagebind_a/manifest.json: 9 texts, 9 images, 8 sounds), and the items/s of
both in the same run (one batch of all items, median of ``--rounds`` calls).

    .venv/bin/python bench/bench_precision.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from synesthesia.modality import Modality
from synesthesia.models import create_model

GOLDEN = Path(__file__).resolve().parents[2] / "shared" / "golden" / "imagebind_a"


def golden_media(modality: Modality) -> list[str | bytes]:
    manifest = json.loads((GOLDEN / "manifest.json").read_text())
    if modality is Modality.TEXT:
        return [t["text"] for t in manifest["texts"] if t["text"]]  # minilm refuses ""
    entries = manifest["images" if modality is Modality.IMAGE else "audios"]
    return [(GOLDEN.parents[2] / e["path"]).read_bytes() for e in entries]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for m in Modality:
        items = golden_media(m)
        models = {p: create_model("synesthesia-minilm", modalities=[m], precision=p)
                  for p in ("fp32", "bf16")}  # fmt: skip
        prepared = [models["fp32"].prepare(m, it) for it in items]
        out, times = {}, {p: [] for p in models}  # type: ignore[var-annotated]
        for p, model in models.items():
            out[p] = model.encode(m, prepared)  # warm-up
        for _ in range(args.rounds):
            for p, model in models.items():
                t0 = time.perf_counter()
                model.encode(m, prepared)
                times[p].append(time.perf_counter() - t0)
        cos = (out["fp32"] * out["bf16"]).sum(1)  # both unit-norm
        ips = {p: len(items) / statistics.median(t) for p, t in times.items()}
        rows.append((m.value, len(items), cos, ips))
        print(f"{m.value}: per-item cosine {np.array2string(cos, precision=5)}", flush=True)
    print(f"\nsynesthesia-minilm (shipped weights), {args.threads} threads, torch "
          f"{torch.__version__}, median of {args.rounds} calls\n")  # fmt: skip
    print("| modality | items | min cosine bf16 vs fp32 | mean | fp32 items/s | bf16 items/s |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, n, cos, ips in rows:
        print(f"| {name} | {n} | {cos.min():.5f} | {cos.mean():.5f} | {ips['fp32']:.1f} "
              f"| {ips['bf16']:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()

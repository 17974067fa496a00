"""Equal-budget design comparison of the image/audio towers (docs/model-history.md, "Short runs").

    .venv/bin/python bench/research/bench_train_designs.py image stem 600 '{"blocks_per_stage": 2}'

trains one tower for N steps on this CPU (1 thread), evaluates it and appends a JSON line to
runs/designs.jsonl; ``bench_train_designs.py table`` prints them as a markdown table.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
from synesthesia.train.config import TrainConfig
from synesthesia.train.evaluate import evaluate
from synesthesia.train.loop import train_tower


def table(path: Path = Path("runs/designs.jsonl")) -> str:
    """The design comparison as a markdown table (one row per run)."""
    lines = [
        "| modality | mode | model overrides | steps x batch | train s | CIFAR-10 | ESC-10 "
        "| ESC-50 | ms/item |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for line in path.read_text().splitlines():
        r = json.loads(line)
        img = r.get("CIFAR-10 test zero-shot top-1")
        e10 = r.get("ESC-10 fold 5 zero-shot top-1")
        e50 = r.get("ESC-50 eval zero-shot top-1 (50 classes)")
        ms = r.get("image ms/item (batched, this CPU)") or r.get("audio ms/clip (5 s, this CPU)")
        cells = [
            r["modality"], r["mode"], json.dumps(r["model"]) if r["model"] else "-",
            f"{r['steps']} x {r['batch']}", f"{r['train_s']:.0f}",
            *(f"{v:.1%}" if v is not None else "-" for v in (img, e10, e50)), f"{ms:.2f}",
        ]  # fmt: skip
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if argv[:1] == ["table"]:
        print(table())
        return 0
    torch.set_num_threads(1)
    modality, mode, steps = argv[0], argv[1], int(argv[2])
    model_over = json.loads(argv[3]) if len(argv) > 3 else {}
    stage_over = json.loads(argv[4]) if len(argv) > 4 else {}
    cfg = TrainConfig.from_dict({
        "name": f"design-{modality}-{mode}",
        "model": {modality: {"mode": mode, **model_over}},
        modality: {"steps": steps, "warmup": max(10, steps // 15), **stage_over},
    })  # fmt: skip
    run = (
        Path("runs")
        / "designs"
        / f"{modality}-{mode}-{steps}-{abs(hash(argv[3:].__str__())) % 10**6}"
    )
    t = time.perf_counter()
    model, losses = train_tower(cfg, modality, run, resume=False, progress=False)
    train_s = time.perf_counter() - t
    rep = evaluate(model, limit=2000 if modality == "image" else None, parity=False)
    row = {"modality": modality, "mode": mode, "steps": steps, "batch": cfg.stage(modality).batch,
           "model": model_over, "stage": stage_over, "train_s": round(train_s, 1),
           "final_loss": sum(losses[-20:]) / 20, **rep.metrics,
           "per_class": rep.per_class}  # fmt: skip
    with Path("runs/designs.jsonl").open("a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

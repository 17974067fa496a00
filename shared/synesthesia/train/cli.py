"""Entry points wired to ``synesthesia train CONFIG`` and ``synesthesia eval``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import cast

import torch

from synesthesia.models.minilm.model import SynesthesiaMiniLM
from synesthesia.train.config import TrainConfig


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[3]


def train_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="synesthesia train", description="train the image/audio towers"
    )
    p.add_argument("config", help="a JSON training config (configs/train/*.json)")
    p.add_argument("--modality", choices=["image", "audio", "all"], default="all",
                   help="train one tower (run two processes for both) or both in turn")  # fmt: skip
    p.add_argument("--run-dir", type=Path,
                   help="checkpoints and logs (default runs/<name>; runs/<name>-seed<N> with "
                        "--seed)")  # fmt: skip
    p.add_argument("--seed", type=int, help="override the config's seed (another draw of a recipe)")
    p.add_argument("--fresh", action="store_true", help="ignore existing checkpoints")
    p.add_argument("--export", type=Path, help="write both towers to this safetensors file")
    p.add_argument("--export-only", action="store_true", help="only export the run's checkpoints")
    p.add_argument("--eval", action="store_true", help="evaluate the exported/trained towers")
    p.add_argument("--soup", type=Path, nargs="+", default=[], metavar="RUN_DIR",
                   help="export/evaluate the average of this run's audio tower and these runs' "
                        "(other seeds of the same config)")  # fmt: skip
    p.add_argument("--towers-from", type=Path, metavar="WEIGHTS",
                   help="export/evaluate the towers this run does not train (see --modality) "
                        "from this towers file, as they are there (e.g. the audio tower of the "
                        "recipe's first stages beside an image tower fine-tuned here)")  # fmt: skip
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from synesthesia.models.minilm.weights import TOWERS, read_header, save_towers
    from synesthesia.train.evaluate import evaluate
    from synesthesia.train.loop import load_trained, train_tower

    cfg = TrainConfig.load(args.config)
    if args.seed is not None:
        cfg = dataclasses.replace(cfg, name=f"{cfg.name}-seed{args.seed}", seed=args.seed)
    run_dir = args.run_dir or _repo_root() / "runs" / cfg.name
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(cfg.to_json())
    mods = ("image", "audio") if args.modality == "all" else (args.modality,)
    if not args.export_only:
        for m in mods:
            t = time.perf_counter()
            train_tower(cfg, m, run_dir, resume=not args.fresh, progress=not args.no_progress)
            print(f"{m} tower trained in {time.perf_counter() - t:.0f} s -> {run_dir}")
    if args.export or args.eval:
        towers = ("image", "audio") if args.export else mods
        if args.towers_from:
            towers = mods
        model = load_trained(cfg, run_dir, towers, soup=tuple(args.soup))
        if args.towers_from:
            graft_towers(model, args.towers_from, tuple(t for t in TOWERS if t not in towers))
        if args.export:
            meta = {"train_config": cfg.to_json()}
            if args.towers_from:
                meta["towers_from"] = str(read_header(args.towers_from)[1].get("revision"))
            if args.soup:
                seeds = [cfg.seed] + [TrainConfig.load(r / "config.json").seed for r in args.soup]
                meta["audio_soup_seeds"] = json.dumps(seeds)
            rev = save_towers(model, args.export, meta)
            print(f"exported {args.export} (revision {rev})")
        if args.eval:
            rep = evaluate(model, limit=cfg.eval_limit)
            print(rep.table())
            (run_dir / "eval.json").write_text(json.dumps(rep.__dict__, indent=1))
    return 0


def graft_towers(model: SynesthesiaMiniLM, weights: Path, modalities: tuple[str, ...]) -> None:
    """Put ``weights``' towers of ``modalities`` (with their config and text anchors) into
    ``model``."""
    from synesthesia.models.minilm.weights import load_model

    other, _ = load_model(weights, modalities)
    for m in modalities:
        setattr(model, m, getattr(other, m))
        model.cfg = dataclasses.replace(model.cfg, **{m: getattr(other.cfg, m)})


def eval_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="synesthesia eval", description="the metric table of weights")
    p.add_argument("weights", nargs="?", type=Path, help="a towers file (default: the shipped one)")
    p.add_argument("--limit", type=int, help="evaluate on a subset of each eval set (quick look)")
    p.add_argument("--json", type=Path, help="also write the metrics here")
    p.add_argument("--no-parity", action="store_true", help="skip the text parity check")
    p.add_argument("--open-world", choices=["eval", "val", "none"], default="eval",
                   help="the ImageNet sample classes scored as unseen: eval (the final figures), "
                        "val (the validation classes carved from train, for design choices) or "
                        "none")  # fmt: skip
    p.add_argument(
        "--no-anchors",
        action="store_true",
        help="evaluate without the towers' text-anchor heads (the plain tower vectors)",
    )
    p.add_argument("--gallery", action="store_true",
                   help="also rank each held-out Tux Paint sound's own picture among the demo "
                        "gallery's pictures (fetches tuxpaint-stamps-default once)")  # fmt: skip
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="the towers' weights and activations, as a service with that precision "
                        "runs them (vectors compared in float32)")  # fmt: skip
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    from synesthesia.models.minilm.weights import default_weights_path, load_model
    from synesthesia.train.evaluate import evaluate

    path = args.weights or default_weights_path()
    model, meta = load_model(path)
    print(f"weights: {path} (revision {meta.get('revision')})")
    if args.no_anchors:
        for tower in (model.image, model.audio):
            if tower is not None:
                tower.anchors = None
        print("text-anchor heads removed (--no-anchors)")
    if args.precision != "fp32":
        from synesthesia.models.minilm.model import SynesthesiaMiniLM
        from synesthesia.train.evaluate import InPrecision

        dtype = getattr(torch, {"bf16": "bfloat16"}[args.precision])
        model = cast(SynesthesiaMiniLM, InPrecision(model, dtype))  # the same interface
        print(f"towers run in {args.precision}")
    split = None if args.open_world == "none" else args.open_world
    rep = evaluate(model, limit=args.limit, parity=not args.no_parity, open_world=split)
    print(rep.table())
    if args.gallery:
        from synesthesia.apps.gallery import obtain_tuxpaint
        from synesthesia.train.data import cache_dir
        from synesthesia.train.evaluate import gallery_ranks

        root = obtain_tuxpaint(cache_dir() / "gallery")
        ranks = gallery_ranks(model, root)
        n = len(list(root.rglob("*.png")))
        print(f"\n| held-out Tux Paint sound | rank of its own picture among {n} |\n|---|---|")
        print("\n".join(f"| {k} | {v} |" for k, v in ranks.items()))
        rep.metrics.update({f"gallery rank: {k}": float(v) for k, v in ranks.items()})
    if args.json:
        args.json.write_text(
            json.dumps({"revision": meta.get("revision"), **rep.__dict__}, indent=1)
        )
    return 0


if __name__ == "__main__":  # pragma: no cover - python -m synesthesia.train.cli train|eval ...
    cmd, rest = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else ("eval", [])
    raise SystemExit(train_main(rest) if cmd == "train" else eval_main(rest))

"""How much of an audio figure is the draw, and what averaging the draws gives
(docs/model-card.md, "Fourth round"): the shipped audio tower and other runs of its recipe,
each read out as shipped (text anchors + busiest excerpt), then all of them as one ensemble
(unit vectors averaged before the text-anchor head).

    # other draws of the fourth round's recipe, bound to its image tower:
    for s in 1 2 3 4; do
      mkdir -p runs/shipped-v2-seed$s && cp runs/shipped-v2/image.ckpt.pt runs/shipped-v2-seed$s/
      .venv/bin/synesthesia train configs/train/shipped-v2.json --modality audio --seed $s
    done
    .venv/bin/python bench/bench_audio_seeds.py runs/shipped-v2-seed{1,2,3,4} [--gallery]

The first row and the read-out (the text anchors) are the shipped towers file's: the fourth
round's table was printed at commit d64d052, whose towers file was that round's.

Each run directory needs its ``config.json`` and ``audio.ckpt.pt``. Prints one markdown row per
tower and one for the ensemble: the metrics of ``synesthesia eval`` and, with --gallery, the
demo-gallery ranks of the held-out Tux Paint sounds; and the cost of one 5 s window (one torch
thread) for one tower and for the ensemble.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from bench_audio_head import window_ms  # this folder (the script's own)
from synesthesia.models.minilm.model import SynesthesiaMiniLM, Tower
from synesthesia.models.minilm.weights import load_model
from synesthesia.train.config import TrainConfig
from synesthesia.train.evaluate import evaluate, gallery_ranks
from synesthesia.train.loop import load_trained

COLUMNS = {
    "ESC-10 fold 5 zero-shot top-1": "ESC-10 f5",
    "ESC-50 eval zero-shot top-1 (50 classes)": "ESC-50",
    "bark->photo mean class P@10": "bark→photo",
}


def ensemble_encoder(model: SynesthesiaMiniLM, members: list[Tower]):  # type: ignore[no-untyped-def]
    """``encode_audio`` of the average of ``members``, read out like the shipped tower."""
    head = model.audio.anchors  # type: ignore[union-attr]

    def embed(fbank: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        vecs = [t.pool(*t.stem(fbank, frames), model.backbone) for t in members]
        z = F.normalize(torch.stack([F.normalize(v, dim=-1) for v in vecs]).sum(0), dim=-1)
        return z if head is None else head(z)

    return lambda fbank, frames: model.read_out_audio(fbank, frames, embed)


def main(argv: list[str]) -> int:
    gallery = "--gallery" in argv
    runs = [Path(a) for a in argv if not a.startswith("--")]
    torch.set_num_threads(1)
    model, meta = load_model()
    assert model.audio is not None and model.audio.anchors is not None
    shipped = model.audio
    members: dict[str, Tower] = {f"shipped ({meta['revision']})": shipped}
    for run in runs:
        tower = load_trained(TrainConfig.load(run / "config.json"), run, ("audio",)).audio
        assert tower is not None
        members[run.name] = tower
    root = Path.home() / ".cache" / "synesthesia" / "gallery" / "tuxpaint-stamps"
    print(f"one 5 s window, one thread: {window_ms(model):.1f} ms per tower")
    heads = " | ".join(COLUMNS.values())
    print(f"\n| audio tower | {heads} | gallery ranks |\n|---|{'---|' * len(COLUMNS)}---|")
    encode = model.encode_audio
    for name, tower in [*members.items(), (f"ensemble of {len(members)}", None)]:
        if tower is None:
            model.audio = shipped
            model.encode_audio = ensemble_encoder(model, list(members.values()))  # type: ignore[method-assign]
            cost = f" ({window_ms(model):.1f} ms per window)"
        else:
            tower.anchors = shipped.anchors  # the shipped read-out for every draw
            model.audio, model.encode_audio, cost = tower, encode, ""  # type: ignore[method-assign]
        rep = evaluate(model, parity=False)
        cells = " | ".join(f"{100 * rep.metrics[k]:.1f} %" if "top-1" in k
                           else f"{rep.metrics[k]:.3f}" for k in COLUMNS)  # fmt: skip
        ranks = gallery_ranks(model, root) if gallery else "-"
        print(f"| {name}{cost} | {cells} | {ranks} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""What the audio tower's inference-time parts do (docs/model-history.md, "Third round"): its
text-anchor head and its busiest-excerpt view, each off and on, and a small grid around the
shipped settings.

    .venv/bin/python bench/research/bench_audio_head.py [WEIGHTS] [--gallery]

Loads a towers file whose audio tower has a text-anchor head, prints the cost of one 5 s window
(one torch thread) with each part off and on, then one markdown row per setting: the metrics of
``synesthesia eval``, sound -> sound retrieval (each ESC-50 eval clip queries the other 103:
precision of the first hit and of the first five, same class) and, with --gallery, the
demo-gallery ranks of the held-out Tux Paint sounds.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch
from synesthesia.models.minilm.model import SynesthesiaMiniLM, TextAnchors
from synesthesia.models.minilm.preprocess import audio_to_windows
from synesthesia.models.minilm.weights import default_weights_path, load_model
from synesthesia.train import data
from synesthesia.train.evaluate import audio_vectors, evaluate, gallery_ranks

# (tau, blend, busy seconds); tau None = no anchors
ROWS: list[tuple[float | None, float, float]] = [
    (None, 1.0, 0.0), (0.02, 0.5, 0.0), (None, 1.0, 1.5),
    (0.02, 0.5, 1.0), (0.02, 0.5, 1.5), (0.02, 0.5, 2.5),
    *[(tau, blend, 1.5) for tau in (0.01, 0.02, 0.03) for blend in (0.3, 0.5, 0.7)
      if (tau, blend) != (0.02, 0.5)],
]  # fmt: skip
COLUMNS = {
    "CIFAR-10 test zero-shot top-1": "CIFAR-10",
    "ESC-10 fold 5 zero-shot top-1": "ESC-10 f5",
    "ESC-50 eval zero-shot top-1 (50 classes)": "ESC-50",
    "bark->photo mean class P@10": "bark→photo",
}


def sound_to_sound(model: SynesthesiaMiniLM) -> tuple[float, float]:
    """Leave-one-out retrieval among the ESC-50 eval clips: (P@1, P@5) of the same class."""
    clips = data.esc50_clips("eval")
    labels = [c.label for c in clips]
    vecs = audio_vectors(model, clips)
    sims = vecs @ vecs.T
    sims.fill_diagonal_(-2.0)
    top = sims.topk(5, dim=1).indices.tolist()
    same = [[labels[j] == labels[i] for j in row] for i, row in enumerate(top)]
    return sum(r[0] for r in same) / len(same), sum(sum(r) / 5 for r in same) / len(same)


def configure(
    model: SynesthesiaMiniLM, head: TextAnchors, tau: float | None, blend: float, busy: float
) -> None:
    """The audio tower with ``head`` at (tau, blend) or without it (tau None), and its
    busiest-excerpt view of ``busy`` seconds (0: off)."""
    assert model.audio is not None
    model.audio.anchors = None if tau is None else head
    head.tau, head.blend = tau or head.tau, blend
    audio = dataclasses.replace(model.cfg.audio, busy_view_seconds=busy)
    model.cfg = dataclasses.replace(model.cfg, audio=audio)


@torch.inference_mode()
def window_ms(model: SynesthesiaMiniLM, repeats: int = 40) -> float:
    """One 5 s window through the audio tower, one torch thread."""
    wave = np.random.default_rng(0).normal(0, 0.1, 5 * 16_000).astype(np.float32)
    fbank, frames = audio_to_windows(wave, model.cfg.audio)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    for _ in range(5):
        model.encode_audio(fbank, frames)
    t = time.perf_counter()
    for _ in range(repeats):
        model.encode_audio(fbank, frames)
    torch.set_num_threads(threads)
    return 1000 * (time.perf_counter() - t) / repeats


def main(argv: list[str]) -> int:
    paths = [a for a in argv if not a.startswith("--")]
    weights = Path(paths[0]) if paths else default_weights_path()
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    model, meta = load_model(weights)
    head = model.audio.anchors if model.audio is not None else None
    if head is None:
        print(f"{weights}: the audio tower has no text anchors", file=sys.stderr)
        return 2
    root = None
    if "--gallery" in argv:
        from synesthesia.apps.gallery import obtain_tuxpaint
        from synesthesia.train.data import cache_dir

        root = obtain_tuxpaint(cache_dir() / "gallery")
    print(f"weights {weights} (revision {meta.get('revision')}), {len(head.texts)} anchor texts")
    shipped = (head.tau, head.blend, model.cfg.audio.busy_view_seconds)
    costs = []
    for name, setting in (("both off", (None, 1.0, 0.0)), ("anchors", (0.02, 0.5, 0.0)),
                          ("anchors + busiest excerpt", (0.02, 0.5, 1.5))):  # fmt: skip
        configure(model, head, *setting)
        costs.append(f"{name} {window_ms(model):.1f}")
    print("ms per 5 s window (1 thread): " + ", ".join(costs) + "\n")
    header = ["tau", "blend", "busy s", *COLUMNS.values(), "sound→sound P@1 / P@5", "per class"]
    header += ["gallery ranks"] if root else []
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for tau, blend, busy in ROWS:
        t = time.perf_counter()
        configure(model, head, tau, blend, busy)
        rep = evaluate(model, parity=False)
        cells = ["off" if tau is None else f"{tau:g}", "-" if tau is None else f"{blend:g}"]
        cells.append(f"{busy:g}" if busy else "off")
        if (tau, blend, busy) == shipped:
            cells = [f"**{c}**" for c in cells]
        cells += [f"{rep.metrics[k]:.3f}" for k in COLUMNS]
        cells.append("{:.3f} / {:.3f}".format(*sound_to_sound(model)))
        cells.append(" ".join(f"{k} {v:.2f}" for k, v in rep.per_class.items()))
        if root is not None:
            cells.append(" ".join(f"{k} {v}" for k, v in gallery_ranks(model, root).items()))
        print(
            "| " + " | ".join(cells) + f" |  <!-- {time.perf_counter() - t:.0f} s -->", flush=True
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""Do the trained image stem's conv filters make good audio features? (docs/model-history.md, "Fifth
round"). A linear probe on frozen conv features: each ESC-10 clip's log-mel windows go through
a conv body (read as one-channel pictures), the feature map's channel means and maxima are
averaged over windows, and a logistic regression fitted on folds 1-4 is scored on fold 5.

    .venv/bin/python bench/research/bench_stem_transfer.py [WEIGHTS]

Bodies compared (the same network where they can be):
- ``random``: the image stem's layout, freshly initialised;
- ``image stem``: the trained image stem of WEIGHTS (default: the shipped towers), its first
  conv's colour filters summed (``train.loop.init_audio_stem_from_image``);
- ``audio stem``: the trained audio stem of WEIGHTS, as a reference.
For the first two, BatchNorm statistics are re-estimated on the training clips (their own are
CIFAR's or none). Supervised on ESC-10 labels, so not comparable with zero-shot figures; it
ranks initialisations, which is what the audio tower's training starts from.
"""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from synesthesia.models.minilm.preprocess import audio_to_windows
from synesthesia.models.minilm.stems import AudioStem, ImageStem
from synesthesia.models.minilm.weights import default_weights_path, load_model
from synesthesia.train import data
from synesthesia.train.loop import init_audio_stem_from_image
from torch import nn


def windows(clip: data.Clip, cfg) -> torch.Tensor:  # type: ignore[no-untyped-def]
    fb, _ = audio_to_windows(data.load_wave(clip.path, cfg.sample_rate_hz), cfg)
    return fb.transpose(1, 2).unsqueeze(1)  # [W, 1, M, T]


@torch.no_grad()
def features(body: nn.Module, clips: list[data.Clip], cfg) -> np.ndarray:  # type: ignore[no-untyped-def]
    out = []
    for clip in clips:
        f = body(windows(clip, cfg))
        out.append(torch.cat([f.mean((2, 3)), f.amax((2, 3))], 1).mean(0).numpy())
    return np.stack(out)


@torch.no_grad()
def recalibrate(body: nn.Module, clips: list[data.Clip], cfg) -> None:  # type: ignore[no-untyped-def]
    for m in body.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # a plain average over the batches below
    body.train()
    for clip in clips:
        body(windows(clip, cfg))
    body.eval()


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    path = sys.argv[1] if len(sys.argv) > 1 else default_weights_path()
    model, meta = load_model(path)
    assert model.image is not None and model.audio is not None
    cfg = model.cfg.audio
    like_image = dataclasses.replace(
        cfg, channels=model.cfg.image.channels, patchify=True,
        blocks_per_stage=model.cfg.image.blocks_per_stage,
    )  # fmt: skip
    random_body = AudioStem(like_image, model.cfg.dim).body
    transferred = AudioStem(like_image, model.cfg.dim)
    image_stem = model.image.stem
    assert isinstance(image_stem, ImageStem)
    init_audio_stem_from_image(transferred, image_stem)
    train, test = data.esc10_clips("train"), data.esc10_clips("eval")
    bodies = {"random": random_body, "image stem": transferred.body,
              "audio stem": model.audio.stem.body}  # type: ignore[union-attr]  # fmt: skip
    print(f"weights {path} (revision {meta.get('revision')}); ESC-10 linear probe, "
          f"{len(train)} clips -> {len(test)}\n")  # fmt: skip
    print("| conv body | C=0.01 | C=0.1 | C=1 |\n|---|---|---|---|")
    for name, body in bodies.items():
        if name != "audio stem":
            recalibrate(body, train[::2], cfg)
        body.eval()
        xtr, xte = features(body, train, cfg), features(body, test, cfg)
        scale = StandardScaler().fit(xtr)
        row = []
        for c in (0.01, 0.1, 1.0):
            clf = LogisticRegression(C=c, max_iter=3000).fit(
                scale.transform(xtr), [x.label for x in train]
            )
            acc = float(np.mean(clf.predict(scale.transform(xte)) == [x.label for x in test]))
            row.append(f"{100 * acc:.1f} %")
        print(f"| {name} | " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()

"""What one item costs to prepare (decode, resample, tokenise), hostile inputs included.

    .venv/bin/python bench/bench_input_cost.py [--models synesthesia-minilm,imagebind-test]

In-process, through each embedder's ``prepare`` (exactly what an encoder service runs before the
forward pass; ``imagebind-test`` is the tiny random ImageBind, whose preprocessing is the real
one). Per case: CPU seconds per item (all threads) and the growth of peak RSS over the resident
size before the case (Linux: the peak is reset through /proc/self/clear_refs). The target
(issue 15): no item within the documented limits costs more than ~1 s of CPU or ~200 MB beyond
the forward pass, or it is refused up front with INVALID_ARGUMENT. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import io
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synesthesia.errors import InvalidInput
from synesthesia.models import create_model

PHOTO = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet_sample" / "images"


def wav(sr: int, seconds: float, channels: int = 1) -> bytes:
    t = np.arange(round(sr * seconds)) / sr
    tone = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * np.random.default_rng(0).standard_normal(
        len(t)
    )
    buf = io.BytesIO()
    sf.write(buf, np.repeat(tone[:, None], channels, 1), sr, subtype="PCM_16", format="WAV")
    return buf.getvalue()


def header_only_jpeg(width: int = 6000, height: int = 6000) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (120, 30, 200)).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    struct.pack_into(">HH", data, data.find(b"\xff\xc0") + 5, height, width)
    return bytes(data)


def photo() -> bytes:
    files = sorted(PHOTO.glob("*.jpg")) if PHOTO.is_dir() else []
    if files:
        return max(files[:50], key=lambda p: p.stat().st_size).read_bytes()
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (768, 1024, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def flat_jpeg(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (width, height), 128).save(buf, "JPEG", quality=1, progressive=True)
    return buf.getvalue()


def text_mb(kind: str) -> str:
    rng = np.random.default_rng(1)
    if kind == "prose":
        words = ["the", "dog", "barks", "at", "a", "passing", "xylophone", "loudly", "again"]
        return " ".join(rng.choice(words, 200_000))[:999_000]
    if kind == "punctuation":
        return "!?" * 499_000
    if kind == "controls":
        return "\x01" * 998_000 + " a dog barks"  # a megabyte that gives no token, no separator
    return " " * 998_000 + "a dog barks"  # a megabyte of blanks, then three words


Case = tuple[str, str, Callable[[], list[object]]]

CASES: list[Case] = [
    ("audio", "WAV 8,001 Hz, 1 s (16 KB)", lambda: [wav(8_001, 1.0)]),
    ("audio", "WAV 109,636 Hz, 0.13 s (29 KB)", lambda: [wav(109_636, 0.13)]),
    ("audio", "WAV 44,101 Hz, 1 s", lambda: [wav(44_101, 1.0)]),
    ("audio", "WAV 44,101 Hz stereo, 60 s", lambda: [wav(44_101, 60.0, 2)]),
    ("audio", "WAV 44,100 Hz, 5 s (reference)", lambda: [wav(44_100, 5.0)]),
    ("audio", "WAV 48,000 Hz, 5 s (reference)", lambda: [wav(48_000, 5.0)]),
    ("text", "60 x 1 MB prose", lambda: [text_mb("prose")] * 60),
    ("text", "60 x 1 MB punctuation", lambda: [text_mb("punctuation")] * 60),
    ("text", "60 x 1 MB spaces + 3 words", lambda: [text_mb("spaces")] * 60),
    ("text", "60 x 1 MB control characters + 3 words", lambda: [text_mb("controls")] * 60),
    ("text", "a sentence (reference)", lambda: ["a dog barking at the postman"]),
    ("image", "JPEG header-only 6000x6000 (633 B)", lambda: [header_only_jpeg()]),
    ("image", "JPEG flat 6000x6000 (legit, 36 Mpx)", lambda: [flat_jpeg(6000, 6000)]),
    ("image", "photo (reference)", lambda: [photo()]),
]


def _status() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS", "VmHWM")):
                out[line.split(":")[0]] = int(line.split()[1])
    return out


def measure(model: object, modality: str, items: list[object]) -> tuple[float, float, str]:
    """(CPU s per item, peak RSS growth MB, outcome)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    base = _status()["VmRSS"]
    start = time.process_time()
    outcome = "accepted"
    for i, item in enumerate(items):
        try:
            model.prepare(modality, item, i)  # type: ignore[attr-defined]
        except InvalidInput as exc:
            outcome = f"INVALID_ARGUMENT: {str(exc)[:70]}"
    cpu = (time.process_time() - start) / len(items)
    return cpu, (_status()["VmHWM"] - base) / 1024, outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="synesthesia-minilm,imagebind-test")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print("| model | modality | input | CPU s / item | peak RSS + MB | outcome |")
    print("|---|---|---|---:|---:|---|")
    for name in args.models.split(","):
        model = create_model(name)
        model.prepare("text", "warm up")
        model.prepare("audio", wav(44_100, 1.0))
        model.prepare("image", photo())
        for modality, label, make in CASES:
            items = make()
            cpu, rss, outcome = measure(model, modality, items)
            print(f"| {name} | {modality} | {label} | {cpu:.3f} | {rss:.0f} | {outcome} |")
            sys.stdout.flush()
            del items


if __name__ == "__main__":
    main()

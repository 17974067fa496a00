"""Long fuzzing run of the media decoders and the filter parser (issue 15).

    .venv/bin/python bench/fuzz.py [--n 10000] [--only image,audio,text,filter] [--seed 0]

Each input is a mutation of a small valid seed (bytes overwritten, header fields set to extreme
values, chunks duplicated or cut, the file truncated) or plain random bytes; text must also cut
exactly (the MiniLM prefix gives the whole text's tokens); filters are random JSON-like trees
over the real keys and operators. Every input must either be accepted or raise
``InvalidInput``; anything else is a crash, and an input that takes longer than ``--hang``
seconds of wall time is a hang (SIGALRM). Prints counts per target and the first crashes.
The bounded version of the same properties runs in the test suite
(tests/unit/test_fuzz_inputs.py, hypothesis).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import json
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synesthesia.errors import InvalidInput
from synesthesia.index.filters import parse_filter
from synesthesia.media import decode_audio, decode_image, validate_text
from synesthesia.modality import Modality

FILTER_KEYS = ["modality", "metadata", "ids", "kind", "year", "tag", "", "x"]
FILTER_OPS = ["eq", "ne", "in", "nin", "gt", "gte", "lt", "lte", "approx"]
SAMPLE_METADATA = [{}, {"kind": "dog", "year": 2001, "tag": "a"}, {"year": 2.5, "x": True}]


def image_seeds() -> list[bytes]:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    out = []
    kinds: list[tuple[str, str, dict[str, Any]]] = [
        ("JPEG", "RGB", {}),
        ("JPEG", "L", {"progressive": True}),
        ("PNG", "RGBA", {}),
        ("PNG", "P", {}),
        ("GIF", "P", {}),
        ("BMP", "RGB", {}),
        ("WEBP", "RGB", {"quality": 50}),
        ("WEBP", "RGBA", {"lossless": True}),
    ]
    for fmt, mode, kw in kinds:
        img = Image.fromarray(pixels).convert(mode)
        buf = io.BytesIO()
        img.save(buf, fmt, **kw)
        out.append(buf.getvalue())
    return out


def audio_seeds() -> list[bytes]:
    out = []
    for sr, channels, fmt, subtype in [
        (16_000, 1, "WAV", "PCM_16"),
        (44_101, 2, "WAV", "FLOAT"),
        (8_001, 1, "FLAC", None),
        (22_050, 2, "OGG", "VORBIS"),
        (44_100, 1, "MP3", "MPEG_LAYER_III"),
        (11_025, 1, "AIFF", "PCM_16"),
    ]:
        t = np.arange(int(0.2 * sr)) / sr
        tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        buf = io.BytesIO()
        sf.write(buf, np.repeat(tone[:, None], channels, 1), sr, subtype=subtype, format=fmt)
        out.append(buf.getvalue())
    return out


TEXT_SEEDS = [
    b"a dog barking at the postman",
    "Straße, naïve café — 中文! \t\n e\u0301".encode(),
    b"\xff\xfe invalid utf-8 \xc3",
    b"   ",
]


TEXT_ALPHABET = [*"ab Zé中—!?'_ \t\n\r\x01\u0301\u00a0\u3000\u061dΣς\ufffd\u200b", "xylo"]


def random_text(rng: np.random.Generator) -> bytes:
    """Up to 2,000 symbols of letters, separators, marks, controls and odd code points."""
    out = []
    for _ in range(int(rng.integers(1, 2000))):
        if rng.random() < 0.1:
            out.append(chr(int(rng.integers(32, 0x30000))))
        else:
            out.append(TEXT_ALPHABET[int(rng.integers(0, len(TEXT_ALPHABET)))])
    return "".join(out).encode("utf-8", "replace")


def mutate(seed: bytes, rng: np.random.Generator) -> bytes:
    """One random mutation chain of ``seed`` (or, sometimes, random bytes)."""
    if rng.random() < 0.05:
        return rng.integers(0, 256, int(rng.integers(0, 512)), dtype=np.uint8).tobytes()
    data = bytearray(seed)
    for _ in range(int(rng.integers(1, 6))):
        if not data:
            break
        kind = rng.integers(0, 5)
        pos = int(rng.integers(0, len(data)))
        if kind == 0:  # random bytes
            for i in range(pos, min(len(data), pos + int(rng.integers(1, 5)))):
                data[i] = int(rng.integers(0, 256))
        elif kind == 1:  # an extreme header field (sizes, rates, counts)
            hdr = int(rng.integers(0, min(len(data), 64)))
            value = rng.choice([b"\xff\xff", b"\x00\x00", b"\x7f\xff\xff\xff", b"\x00\x01"])
            data[hdr : hdr + len(value)] = value
        elif kind == 2:  # truncate
            del data[max(1, pos) :]
        elif kind == 3:  # duplicate a chunk
            end = min(len(data), pos + int(rng.integers(1, 256)))
            data[pos:pos] = data[pos:end]
        else:  # delete a chunk
            del data[pos : pos + int(rng.integers(1, 64))]
    return bytes(data)


def random_filter(rng: np.random.Generator, depth: int = 0) -> Any:
    def scalar() -> Any:
        options: list[Any] = [
            None,
            True,
            int(rng.integers(-(2**40), 2**40)),
            float(rng.standard_normal()),
            float("nan"),
            float("inf"),
            ["dog", "", "image", "audio", "x"][int(rng.integers(0, 5))],
            2**70,
        ]
        return options[int(rng.integers(0, len(options)))]

    if depth >= 3 or rng.random() < 0.3:
        return scalar()
    if rng.random() < 0.3:
        return [random_filter(rng, depth + 1) for _ in range(int(rng.integers(0, 4)))]
    keys = FILTER_KEYS + FILTER_OPS
    return {
        str(rng.choice(keys)): random_filter(rng, depth + 1) for _ in range(int(rng.integers(0, 4)))
    }


def check_filter(spec: Any) -> str:
    if isinstance(spec, dict) and spec and np.random.default_rng(len(str(spec))).random() < 0.2:
        spec = json.dumps(spec)  # the JSON text form too (NaN/Infinity spelled as JSON allows)
    flt = parse_filter(spec)
    for md in SAMPLE_METADATA:
        flt.matches("a", Modality.IMAGE, md)  # type: ignore[arg-type]
    return "accepted"


_WORDPIECE: list[Any] = []


def check_text(data: bytes) -> str:
    """validate_text, then the MiniLM cut with a tiny context (6 tokens, 4-character chunks) must
    give the whole text's ids and truncation flag (a mismatch is a crash)."""
    from synesthesia.media.text import wordpiece_prefix, wordpiece_separators
    from synesthesia.models.minilm.embedder import load_tokenizer

    text = validate_text(data)
    if not _WORDPIECE:
        tok = load_tokenizer(8)
        _WORDPIECE.extend([tok, wordpiece_separators(tok)])
    tok, separators = _WORDPIECE

    def count(chunk: str) -> int:
        return len(tok.encode(chunk, add_special_tokens=False).ids)

    prefix = wordpiece_prefix(text, count, 6, separators, chunk_chars=4)
    full, cut = tok.encode(text), tok.encode(prefix)
    if cut.ids != full.ids or bool(cut.overflowing) != bool(full.overflowing):
        raise AssertionError(f"the cut changed the tokens of {text!r}")
    return "accepted"


TARGETS: dict[str, tuple[Callable[[], list[bytes]], Callable[[Any], object]]] = {
    "image": (image_seeds, decode_image),
    "audio": (audio_seeds, decode_audio),
    "text": (lambda: TEXT_SEEDS, check_text),
}


class Hang(Exception):
    pass


def _alarm(signum: int, frame: object) -> None:
    raise Hang


def run(target: str, n: int, seed: int, hang_s: float) -> dict[str, Any]:
    import torch  # noqa: F401  (imported up front: an alarm must not land inside an import)
    import torchaudio.functional  # noqa: F401

    rng = np.random.default_rng(seed)
    counts: collections.Counter[str] = collections.Counter()
    crashes: list[str] = []
    slowest = 0.0
    signal.signal(signal.SIGALRM, _alarm)
    seeds = TARGETS[target][0]() if target != "filter" else []
    for seed_bytes in seeds:  # first-use costs (imports, libraries) are not an input's cost
        with contextlib.suppress(InvalidInput):
            TARGETS[target][1](seed_bytes)
    for _ in range(n):
        if target == "filter":
            item: Any = random_filter(rng)
            call: Callable[[Any], object] = check_filter
        elif target == "text" and rng.random() < 0.5:
            item = random_text(rng)
            call = TARGETS[target][1]
        else:
            item = mutate(seeds[int(rng.integers(0, len(seeds)))], rng)
            call = TARGETS[target][1]
        start = time.process_time()
        signal.setitimer(signal.ITIMER_REAL, hang_s)
        try:
            call(item)
            counts["accepted"] += 1
        except InvalidInput:
            counts["rejected"] += 1
        except Hang:
            counts["hang"] += 1
        except Exception as exc:  # a crash: not a domain error
            counts["crash"] += 1
            if len(crashes) < 5:
                crashes.append(f"{type(exc).__name__}: {str(exc)[:120]} <- {item!r:.80}")
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        slowest = max(slowest, time.process_time() - start)
    return {"counts": counts, "crashes": crashes, "slowest": slowest}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--only", default="image,audio,text,filter")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hang", type=float, default=5.0, help="seconds that make a hang")
    args = parser.parse_args()
    print(
        "| target | inputs | accepted | rejected (INVALID_ARGUMENT) | crashes | hangs "
        "| slowest (CPU s) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    failures = []
    for target in args.only.split(","):
        start = time.perf_counter()
        res = run(target, args.n, args.seed, args.hang)
        c = res["counts"]
        print(
            f"| {target} | {args.n} | {c['accepted']} | {c['rejected']} | {c['crash']} "
            f"| {c['hang']} | {res['slowest']:.3f} |  ({time.perf_counter() - start:.0f} s)"
        )
        sys.stdout.flush()
        failures += [f"{target}: {line}" for line in res["crashes"]]
    for line in failures:
        print(line)


if __name__ == "__main__":
    main()

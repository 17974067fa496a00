"""The encoder service against the same model in-process, measured in one run.

    .venv/bin/python bench/bench_serving.py --modality text              # shipped model
    .venv/bin/python bench/bench_serving.py --modality image --precision bf16
    .venv/bin/python bench/bench_serving.py --model imagebind-huge --modality image \\
        --batch 8 --clients 8 --precision bf16 --baseline fp32            # random huge weights

* **in-process**: the bench process decodes and embeds the same inputs with the embedder's own
  ``prepare`` + ``encode``, ``--batch`` items per forward pass: the decode path, batch size,
  precision and torch threads the service uses. items/s over ``--rounds`` passes.
* **served**: the encoder service in a child process (``start_encoder``, the code behind
  ``synesthesia serve``; TLS and tokens off, as in-process has none), ``--clients`` concurrent
  asyncio clients (the SDK's ``AsyncEncoderClient``) in this process, each sending single-item
  ``Embed`` calls until ``--items`` are done. items/s from the first call to the last reply.
* ``--baseline fp32`` adds the in-process fp32 path (the reference's speed: our plain path runs
  at the original ImageBind code's speed, ``bench/bench_imagebind.py``) and the served ÷ that
  ratio, for the precision issue's "served bf16 ≥ 1.5× plain fp32".

``--model imagebind-huge`` builds random weights in the huge configuration (no checkpoint) in
both processes. Inputs are real: ImageNet-sample photos (JPEG, about 256 px), ESC-50 clips (5 s
FLAC, 16 kHz), and sentences, from ../shared/data. Prints a markdown row per measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))

from synesthesia.modality import Modality  # noqa: E402

SENTENCES = [
    "a dog barking at the door",
    "rain falling on a tin roof at night",
    "a red sports car parked on a wet street",
    "two cats sleeping on a sofa in the afternoon sun",
    "church bells ringing over a small town",
    "a plate of pasta with tomato sauce and basil",
    "waves breaking on a rocky beach",
    "a child laughing in a playground",
]


def inputs(modality: Modality, n: int) -> list[str | bytes]:
    if modality is Modality.TEXT:
        return [f"{SENTENCES[i % len(SENTENCES)]} ({i})" for i in range(n)]
    if modality is Modality.IMAGE:
        files = sorted((DATA / "imagenet_sample" / "images").glob("*.jpg"))
    else:
        files = sorted((DATA / "esc50_subset_16k" / "audio").glob("*.flac"))
    if not files:
        raise SystemExit(f"no {modality.value} inputs under {DATA} (see ../shared/data/DATA.md)")
    return [files[i % len(files)].read_bytes() for i in range(n)]


def build_embedder(model: str, modality: Modality, precision: str, batch: int):  # type: ignore[no-untyped-def]
    if model == "imagebind-huge":  # random weights in the huge configuration
        from synesthesia.models.imagebind import IMAGEBIND_HUGE, create_imagebind

        return create_imagebind(
            "imagebind-huge", IMAGEBIND_HUGE, None, modalities=[modality], precision=precision
        )
    from synesthesia.services.encoder.config import EncoderConfig, load_embedder

    config = EncoderConfig(model=model, precision=precision, max_batch_size=batch)
    return load_embedder(config, modality)


def in_process(embedder, modality: Modality, items: list, batch: int, rounds: int) -> float:  # type: ignore[no-untyped-def]
    """items/s of prepare + encode, ``batch`` items per forward pass (after one warm-up pass)."""
    embedder.encode(modality, [embedder.prepare(modality, x) for x in items[:batch]])
    done, start = 0, time.perf_counter()
    for r in range(rounds):
        chunk = items[(r * batch) % len(items) :][:batch]
        chunk = chunk + items[: batch - len(chunk)]
        embedder.encode(modality, [embedder.prepare(modality, x, i) for i, x in enumerate(chunk)])
        done += len(chunk)
    return done / (time.perf_counter() - start)


def serve_child(args: argparse.Namespace) -> None:
    """Child process: build the model, start the encoder service on a free port, print the port,
    serve until stdin closes."""
    import torch
    from synesthesia.services.encoder.app import start_encoder
    from synesthesia.services.encoder.settings import EncoderSettings

    modality = Modality(args.modality)
    settings = EncoderSettings(
        modality=modality,
        port=0,
        max_batch_size=args.batch,
        max_wait_ms=args.max_wait_ms,
        precision=args.precision,
        max_in_flight=max(32, args.clients),
        max_message_bytes=32 << 20,
    )
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    embedder = build_embedder(args.model, modality, args.precision, args.batch)

    async def main() -> None:
        server, servicer = await start_encoder(settings, embedder)
        print(json.dumps({"port": server.port}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await server.stop(0)
        await servicer.close()
        print(json.dumps({"forward_calls": embedder.forward_calls}), flush=True)

    asyncio.run(main())


async def drive(target: str, modality: Modality, items: list, clients: int) -> float:
    from synesthesia.client import AsyncEncoderClient

    conns = [AsyncEncoderClient(target) for _ in range(clients)]
    try:
        await asyncio.gather(*(c.embed(modality, [items[0]]) for c in conns))  # connect, warm
        queue = iter(range(len(items)))

        async def worker(c: AsyncEncoderClient) -> None:
            for i in queue:
                await c.embed(modality, [items[i]])

        start = time.perf_counter()
        await asyncio.gather(*(worker(c) for c in conns))
        return len(items) / (time.perf_counter() - start)
    finally:
        for c in conns:
            await c.close()


@contextlib.contextmanager
def child_service(cmd: list[str]) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """A service in a child process that prints ``{"port": N}`` once it serves and serves until
    its stdin closes: (the process, the port); killed if it is still running at the end."""
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        line = proc.stdout.readline()
        if not line:
            raise SystemExit("the service did not start")
        yield proc, int(json.loads(line)["port"])
    finally:
        if proc.poll() is None:
            proc.kill()


def served(args: argparse.Namespace, items: list) -> tuple[float, float]:
    """(items/s, mean rows per forward pass) of the service in a child process."""
    with child_service([sys.executable, __file__, "--child", *sys.argv[1:]]) as (proc, port):
        rate = asyncio.run(drive(f"127.0.0.1:{port}", Modality(args.modality), items, args.clients))
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.close()
        calls = json.loads(proc.stdout.readline())["forward_calls"]
        proc.wait(60)
    # forward calls: one warm-up at start, one per client's warm-up batch at most
    return rate, len(items) / max(calls - 1 - args.clients / max(args.batch, 1), 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modality", default="text", choices=[m.value for m in Modality])
    ap.add_argument("--model", default="synesthesia-minilm")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--baseline", choices=["fp32"], help="also the in-process fp32 path")
    ap.add_argument("--batch", type=int, default=32, help="max batch size (both paths)")
    ap.add_argument("--max-wait-ms", type=float, default=5.0)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--items", type=int, default=512, help="served items")
    ap.add_argument("--rounds", type=int, default=16, help="in-process forward passes")
    ap.add_argument("--threads", type=int, default=0, help="torch threads; 0: every CPU")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        serve_child(args)
        return 0
    import torch

    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    modality = Modality(args.modality)
    items = inputs(modality, max(args.items, args.batch))
    rows = []
    precisions = [args.precision] + (
        [args.baseline] if args.baseline and args.baseline != args.precision else []
    )
    for precision in precisions:
        emb = build_embedder(args.model, modality, precision, args.batch)
        rows.append(
            (f"in-process {precision}", in_process(emb, modality, items, args.batch, args.rounds))
        )
        del emb
        gc.collect()
    rate, fill = served(args, items[: args.items])
    rows.insert(1, (f"served {args.precision}, {args.clients} clients", rate))
    print(
        f"\n{args.model} {modality.value}, batch {args.batch}, {torch.get_num_threads()} torch"
        f" threads; served: {args.items} single-item calls, {fill:.1f} rows per forward pass\n"
    )
    print("| path | items/s |")
    print("|---|---|")
    for name, r in rows:
        print(f"| {name} | {r:.2f} |")
    print(f"\nserved / in-process {args.precision}: {rate / rows[0][1]:.2f}")
    if args.baseline and args.baseline != args.precision:
        print(f"served {args.precision} / in-process {args.baseline}: {rate / rows[-1][1]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

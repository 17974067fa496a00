"""The encoder service against the same model in-process, measured in one run.

    .venv/bin/python bench/bench_serving.py --modality text --repeat 3   # shipped model
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
* ``--repeat N`` runs N rounds of in-process and served, interleaved, and keeps each path's
  best: the machine may be shared, and a slow spell then costs one round of each path.
* **serving floor** (unless ``--no-floor``): the same service, clients and calls with a decode
  and a model that cost nothing; its server + client CPU per item is what serving itself
  costs, and in-process's CPU per item ÷ (that + the serving cost) is the most served ÷
  in-process can reach with the clients on the same cores.
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
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))

from synesthesia.modality import Modality  # noqa: E402
from synesthesia.models.device import available_cpus  # noqa: E402

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
        import torch
        from synesthesia.models.imagebind import TOWER, ImageBindEmbedder

        from bench.bench_imagebind import random_tower  # fast init of 630 M parameters

        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]
        tower = random_tower(TOWER[modality], "huge").to(dtype)
        return ImageBindEmbedder(tower, "imagebind-huge")
    from synesthesia.services.encoder.config import EncoderConfig, load_embedder

    config = EncoderConfig(model=model, precision=precision, max_batch_size=batch)
    return load_embedder(config, modality)


def in_process(  # type: ignore[no-untyped-def]
    embedder, modality: Modality, items: list, batch: int, rounds: int, workers: int = 1
) -> float:
    """items/s of prepare + encode, ``batch`` items per forward pass, ``workers`` threads each
    running ``rounds`` passes (after one warm-up pass); torch threads as set by the caller."""
    embedder.encode(modality, [embedder.prepare(modality, x) for x in items[:batch]])

    def work(w: int) -> None:
        for r in range(rounds):
            start = ((r * workers + w) * batch) % len(items)
            chunk = (items[start:] + items)[:batch]
            embedder.encode(
                modality, [embedder.prepare(modality, x, i) for i, x in enumerate(chunk)]
            )

    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(work, range(workers)))
    return rounds * workers * batch / (time.perf_counter() - start)


def settings_of(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from synesthesia.services.encoder.settings import EncoderSettings

    return EncoderSettings(
        modality=Modality(args.modality),
        port=0,
        max_batch_size=args.batch_rows or args.batch,
        max_wait_ms=args.max_wait_ms,
        precision=args.precision,
        torch_threads=args.threads,
        model_workers=args.workers,
        max_in_flight=max(32, args.clients),
        max_message_bytes=32 << 20,
    )


def make_free(embedder) -> None:  # type: ignore[no-untyped-def]
    """``embedder`` with a decode and a model that cost nothing: ``prepare`` keeps no input,
    ``encode`` returns one fixed unit vector a row. Its info, and so the service's layout of
    workers x threads, stay the real model's."""
    from synesthesia.models.embedder import Prepared

    dim = embedder.info().dim
    unit = np.zeros(dim, dtype=np.float32)
    unit[0] = 1.0
    embedder._prepare = lambda modality, item: Prepared(inputs={})
    embedder._encode = lambda modality, prepared: np.tile(unit, (len(prepared), 1))


def serve_child(args: argparse.Namespace) -> None:
    """Child process: build the model, start the encoder service on a free port, print the port,
    serve until stdin closes."""
    from synesthesia.services.encoder.app import start_encoder

    modality = Modality(args.modality)
    settings = settings_of(args)  # start_encoder sets the model workers and torch threads
    embedder = build_embedder(args.model, modality, args.precision, args.batch)
    if args.null_model:
        make_free(embedder)
    model_s = [0.0]
    encode = embedder.encode

    def timed_encode(*a, **kw):  # type: ignore[no-untyped-def]
        t = time.perf_counter()
        try:
            return encode(*a, **kw)
        finally:
            model_s[0] += time.perf_counter() - t

    embedder.encode = timed_encode  # type: ignore[method-assign]

    def stats() -> dict[str, float]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "forward_calls": embedder.forward_calls,
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "model_s": model_s[0],
        }

    async def main() -> None:
        server, servicer = await start_encoder(settings, embedder)
        print(json.dumps({"port": server.port}), flush=True)
        loop = asyncio.get_running_loop()
        # "mark" -> counters now; "stop" (or EOF) -> counters now, then shut down
        while (await loop.run_in_executor(None, sys.stdin.readline)).strip() == "mark":
            print(json.dumps(stats()), flush=True)
        print(json.dumps(stats()), flush=True)
        await server.stop(0)
        await servicer.close()

    asyncio.run(main())


async def drive(
    target: str, modality: Modality, items: list, clients: int, per_call: int, mark
) -> tuple[float, dict[str, float], float]:  # type: ignore[no-untyped-def]
    """(items/s, the server's counters over the run, this process's CPU seconds)."""
    from synesthesia.client import AsyncEncoderClient

    conns = [AsyncEncoderClient(target) for _ in range(clients)]
    try:
        await asyncio.gather(*(c.embed(modality, [items[0]]) for c in conns))  # connect, warm
        queue = iter(range(0, len(items), per_call))

        async def worker(c: AsyncEncoderClient) -> None:
            for i in queue:
                await c.embed(modality, items[i : i + per_call])

        before, cpu0 = mark(), time.process_time()
        start = time.perf_counter()
        await asyncio.gather(*(worker(c) for c in conns))
        wall = time.perf_counter() - start
        cpu, after = time.process_time() - cpu0, mark()
        return len(items) / wall, {k: after[k] - before[k] for k in after}, cpu
    finally:
        for c in conns:
            await c.close()


@contextlib.contextmanager
def child_service(cmd: list[str]) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """A service in a child process that prints ``{"port": N}`` once it serves and serves until
    its stdin closes: (the process, the port); killed if it is still running at the end."""
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise SystemExit("the service did not start")
        yield proc, int(json.loads(line)["port"])
    finally:
        if proc.poll() is None:
            proc.kill()


@contextlib.contextmanager
def served(
    args: argparse.Namespace, items: list, null_model: bool = False
) -> Iterator[Callable[[], dict[str, float]]]:
    """The service in a child process (``null_model``: with a decode and a model that cost
    nothing, ``make_free``); gives a function that runs one round of ``--clients`` concurrent
    callers over ``items`` and returns its figures."""
    cmd = [sys.executable, __file__, "--child", *sys.argv[1:], f"--batch-rows={args.batch_rows}"]
    if null_model:
        cmd.append("--null-model")
    with child_service(cmd) as (proc, port):
        assert proc.stdout is not None and proc.stdin is not None
        stdin, stdout = proc.stdin, proc.stdout

        def mark() -> dict[str, float]:
            stdin.write("mark\n")
            stdin.flush()
            return json.loads(stdout.readline())

        def one_round() -> dict[str, float]:
            rate, server, client_cpu = asyncio.run(
                drive(
                    f"127.0.0.1:{port}",
                    Modality(args.modality),
                    items,
                    args.clients,
                    args.per_call,
                    mark,
                )
            )
            n = len(items)
            return {
                "rate": rate,
                "fill": n / max(server["forward_calls"], 1),
                "server_cpu_ms": server["cpu_s"] / n * 1e3,
                "model_ms": server["model_s"] / n * 1e3,
                "client_cpu_ms": client_cpu / n * 1e3,
            }

        yield one_round
        stdin.write("stop\n")
        stdin.close()
        proc.wait(60)


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
    ap.add_argument("--per-call", type=int, default=1, help="items per Embed call")
    ap.add_argument("--rounds", type=int, default=8, help="in-process passes per worker")
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="rounds of in-process and served, interleaved; each path's best is kept",
    )
    ap.add_argument("--threads", type=int, default=0, help="torch threads per worker; 0: auto")
    ap.add_argument("--workers", type=int, default=0, help="model workers; 0: auto")
    ap.add_argument(
        "--no-floor",
        action="store_true",
        help="skip the served run with a model and decode that cost nothing",
    )
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--null-model", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--batch-rows", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        serve_child(args)
        return 0
    import torch
    from synesthesia.services.encoder.app import parameters

    cpus = available_cpus()
    modality = Modality(args.modality)
    precisions = [args.precision] + (
        [args.baseline] if args.baseline and args.baseline != args.precision else []
    )
    emb = build_embedder(args.model, modality, args.precision, args.batch)
    # the service's layout, as start_encoder picks it, and the plain one
    workers, threads = settings_of(args).parallelism(cpus, False, parameters(emb))
    items = inputs(modality, max(args.items, args.batch * workers))
    # the service counts model rows (an audio item is one row per window)
    args.batch_rows = args.batch * emb.prepare(modality, items[0]).windows
    layouts = [(workers, threads)] + [(1, cpus)] * ((workers, threads) != (1, cpus))
    best: dict[str, float] = {}
    srv: dict[str, float] = {}
    with served(args, items[: args.items]) as serve_round:
        for _ in range(args.repeat):  # interleaved: a slow spell of the machine hits both
            for w, t in layouts:
                torch.set_num_threads(t)
                rate = in_process(emb, modality, items, args.batch, args.rounds, w)
                name = f"in-process {args.precision}, {w} worker(s) x {t} thread(s)"
                best[name] = max(best.get(name, 0.0), rate)
            got = serve_round()
            if got["rate"] > srv.get("rate", 0.0):
                srv = got
    del emb
    gc.collect()
    for precision in precisions[1:]:  # the baseline: once, after the interleaved rounds
        emb = build_embedder(args.model, modality, precision, args.batch)
        torch.set_num_threads(cpus)
        rate = in_process(emb, modality, items, args.batch, args.rounds, 1)
        best[f"in-process {precision}, 1 worker(s) x {cpus} thread(s)"] = rate
        del emb
        gc.collect()
    rows = list(best.items())
    rate = srv["rate"]
    rows.append((f"served {args.precision}, {workers} worker(s) x {threads} thread(s)", rate))
    print(
        f"\n{args.model} {modality.value}, batch {args.batch}, {cpus} CPUs; served:"
        f" {args.items} items in calls of {args.per_call} from {args.clients} clients,"
        f" {srv['fill']:.1f} items per forward pass; per item: server CPU"
        f" {srv['server_cpu_ms']:.2f} ms, model"
        f" {srv['model_ms']:.2f} ms (wall, summed over workers), client CPU"
        f" {srv['client_cpu_ms']:.2f} ms\n"
    )
    print("| path | items/s |")
    print("|---|---|")
    for name, r in rows:
        print(f"| {name} | {r:.2f} |")
    print(f"\nserved / in-process (same layout): {rate / rows[0][1]:.2f}")
    for name, r in rows[1:-1]:
        print(f"served / {name}: {rate / r:.2f}")
    if not args.no_floor:
        with served(args, items[: args.items], null_model=True) as serve_round:
            print_floor(serve_round(), cpus, rows[0][1])
    return 0


def print_floor(free: dict[str, float], cpus: int, in_process_rate: float) -> None:
    """What serving itself costs per item (the same service, clients and calls, with a decode
    and a model that cost nothing), and the served / in-process ratio that cost leaves at most:
    in-process spends ``cpus / in_process_rate`` CPU-seconds an item; served, the same plus the
    serving cost, on the same cores (the clients run on them too)."""
    cost_ms = free["server_cpu_ms"] + free["client_cpu_ms"]
    model_ms = cpus / in_process_rate * 1e3
    print(
        f"\nserving floor (decode and model that cost nothing): {free['rate']:.2f} items/s;"
        f" per item: server CPU {free['server_cpu_ms']:.2f} ms + client CPU"
        f" {free['client_cpu_ms']:.2f} ms = {cost_ms:.2f} ms, against {model_ms:.2f} ms of CPU"
        f" per item in-process (same layout)"
    )
    ceiling = model_ms / (model_ms + cost_ms)
    print(f"served / in-process at most (serving cost alone): {ceiling:.2f}")


if __name__ == "__main__":
    sys.exit(main())

"""``synesthesia demo``: bring up the local stack (the three encoder services as processes on
loopback), show that all three answer in one space, and keep it running until Ctrl-C."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from synesthesia.client import EncoderClient
from synesthesia.modality import Modality
from synesthesia.services.encoder.warmup import synthetic_png, synthetic_wav
from synesthesia.serving.context import configure_logging
from synesthesia.stack import LocalStack

CAPTIONS = [
    "a dog barking loudly",
    "a cat purring on a sofa",
    "a rooster crowing at sunrise",
    "heavy rain falling on a roof",
    "a helicopter flying overhead",
    "waves crashing on the beach",
]


def demo_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="synesthesia demo")
    parser.add_argument("--data-dir", type=Path, default=Path("data"), help="logs and index")
    parser.add_argument("--base-port", type=int, default=50051, help="text; image +1; audio +2")
    parser.add_argument("--once", action="store_true", help="stop after the queries")
    args = parser.parse_args(argv)
    configure_logging("WARNING")

    stack = LocalStack(log_dir=args.data_dir / "logs")
    for offset, m in enumerate(Modality):
        stack.add(m.value, args.base_port + offset)
    print(f"starting the local stack (logs in {args.data_dir / 'logs'}) …", flush=True)
    t0 = time.monotonic()
    with stack:
        print(f"all services SERVING after {time.monotonic() - t0:.1f} s")
        targets = {Modality(s.name): s.target for s in stack.services}
        clients = {m: EncoderClient(t) for m, t in targets.items()}
        for m, c in clients.items():
            info = c.info()
            print(f"  {m.value:5s} encoder  {targets[m]}  model {info.model_id}  dim {info.dim}")

        text = clients[Modality.TEXT]
        gallery = text.embed("text", CAPTIONS)
        for query in ("a puppy woofing", "a storm with thunder and rain"):
            q = text.embed("text", [query])[0]
            scores = gallery @ q
            print(f"\nquery (text): {query!r}")
            for rank, i in enumerate(np.argsort(-scores)[:3], 1):
                print(f"  {rank}. {scores[i]:.3f}  {CAPTIONS[i]}")
        image = clients[Modality.IMAGE].embed("image", [synthetic_png()])
        sound = clients[Modality.AUDIO].embed("audio", [synthetic_wav()])
        print(
            f"\nimage and sound vectors: {image.shape[1]}-d, norms "
            f"{np.linalg.norm(image):.3f} / {np.linalg.norm(sound):.3f}, "
            f"cosine to 'a dog barking loudly': {float(image[0] @ gallery[0]):.3f} / "
            f"{float(sound[0] @ gallery[0]):.3f}"
        )
        for c in clients.values():
            c.close()
        if not args.once:
            print("\nthe stack keeps running; press Ctrl-C to stop it.")
            try:
                while all(s.proc and s.proc.poll() is None for s in stack.services):
                    time.sleep(1)
            except KeyboardInterrupt:
                print("\nstopping …")
    return 0

"""SIGKILL a search server 20 times during streaming upserts; report what survived.

.venv/bin/python bench/bench_search_crash.py [--kills 20]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.services import crash_harness


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        r = crash_harness.run(Path(tmp), kills=args.kills, seed=args.seed)
    restarts = sorted(r.restart_seconds)
    print(
        "| kills | acknowledged | verified (over all restarts) | lost | mismatched | "
        "restart median s | restart max s |"
    )
    print("|---|---|---|---|---|---|---|")
    print(
        f"| {r.kills} | {r.acknowledged} | {r.verified} | {len(r.lost)} | {len(r.mismatched)} "
        f"| {restarts[len(restarts) // 2]:.2f} | {restarts[-1]:.2f} |"
    )
    return 1 if r.lost or r.mismatched else 0


if __name__ == "__main__":
    sys.exit(main())

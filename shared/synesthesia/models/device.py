"""Where a model runs and in which precision: the ``device`` and ``precision`` settings every
family honours, resolved once when the model is built so a bad setting fails at start-up
(FailedPrecondition with the reason), never on the first request.

* ``device``: ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (cuda when torch sees a GPU, else cpu).
* ``precision``: ``fp32``, ``bf16`` or ``fp16`` — the dtype of the weights and of floating
  inputs. Vectors always leave as float32, unit-norm, on the CPU. fp16 is refused on the CPU
  (slow and poorly supported there; bf16 is the CPU's half precision). bf16 on a CPU without
  bf16 instructions (AVX2 only) is allowed but logs a warning at start-up: torch emulates it
  there, many times slower than fp32 (docs/benchmarks.md).
"""

from __future__ import annotations

import logging
import math
import os
import re
from pathlib import Path
from typing import Literal

import torch

from synesthesia.errors import FailedPrecondition

log = logging.getLogger(__name__)

Precision = Literal["fp32", "bf16", "fp16"]
PRECISIONS: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}
#: the values a ``device`` setting may take (checked by EncoderConfig before anything loads)
DEVICE_PATTERN = r"^(auto|cpu|cuda(:\d+)?)$"


def resolve_device(device: str | torch.device = "cpu") -> torch.device:
    """The torch device for a setting; raises FailedPrecondition for an unknown or absent one."""
    name = str(device).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not re.match(DEVICE_PATTERN, name):
        raise FailedPrecondition(f"unknown device {str(device)!r}: use cpu, cuda, cuda:N or auto")
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise FailedPrecondition(
                f"device {name!r} was asked for but torch sees no CUDA GPU "
                f"(torch {torch.__version__}, CUDA build {torch.version.cuda}); "
                "use device cpu or auto"
            )
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise FailedPrecondition(f"device {name!r} does not exist: torch sees {count} GPU(s)")
    return dev


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """The dtype of ``precision`` on ``device``; fp16 on the CPU is refused."""
    try:
        dtype = PRECISIONS[precision]
    except KeyError:
        known = ", ".join(PRECISIONS)
        raise FailedPrecondition(f"unknown precision {precision!r}: use one of {known}") from None
    if dtype is torch.float16 and device.type == "cpu":
        raise FailedPrecondition(
            "precision fp16 is not supported on the CPU: use bf16 (fast where the CPU has "
            "AVX-512 BF16 or AMX) or fp32, or run on a GPU"
        )
    if dtype is torch.bfloat16 and device.type == "cpu" and cpu_has_bf16() is False:
        log.warning(
            "precision bf16 on a CPU without bf16 instructions (no AVX-512 BF16, AMX or Arm "
            "BF16; torch sees %s): torch emulates bf16 here, many times slower than fp32 — "
            "use precision fp32 on this machine",
            torch.backends.cpu.get_cpu_capability(),
        )
    return dtype


def cpu_has_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool | None:
    """Whether the CPU has bf16 arithmetic (x86: ``avx512_bf16`` or ``amx_bf16``; Arm:
    ``bf16``), read from the flags in ``cpuinfo``; None where that cannot be told."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            return bool(set(value.split()) & {"avx512_bf16", "amx_bf16", "bf16"})
    return None


def precision_name(dtype: torch.dtype) -> str:
    return next(k for k, v in PRECISIONS.items() if v is dtype)


def available_cpus(cgroup_root: str = "/sys/fs/cgroup") -> int:
    """CPUs this process may use: its affinity set, capped by a cgroup CPU quota (a container's
    ``--cpus`` / a pod's CPU limit, which the affinity set does not show)."""
    cpus = len(os.sched_getaffinity(0))
    root = Path(cgroup_root)
    quota = None
    try:  # cgroup v2: "max 100000" or "<quota> <period>"
        q, period = (root / "cpu.max").read_text().split()[:2]
        quota = None if q == "max" else int(q) / int(period)
    except (OSError, ValueError):
        try:  # cgroup v1
            q_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
            period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
            quota = q_us / period_us if q_us > 0 and period_us > 0 else None
        except (OSError, ValueError):
            quota = None
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return max(1, cpus)

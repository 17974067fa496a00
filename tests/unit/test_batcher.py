"""The micro-batcher's model workers, and how an encoder config splits the CPUs among them."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from synesthesia.models.device import available_cpus
from synesthesia.models.embedder import Prepared
from synesthesia.services.encoder.config import EncoderConfig
from synesthesia.serving.batcher import MicroBatcher


class Probe:
    """An encode that records how many calls run at once and can hold them until released."""

    def __init__(self, hold_s: float = 0.05, fail_first: bool = False) -> None:
        self.hold_s = hold_s
        self.fail_first = fail_first
        self.lock = threading.Lock()
        self.inside = 0
        self.most_inside = 0
        self.batches: list[int] = []

    def __call__(self, prepared: Sequence[Prepared]) -> np.ndarray:
        with self.lock:
            self.inside += 1
            self.most_inside = max(self.most_inside, self.inside)
            self.batches.append(len(prepared))
            first = len(self.batches) == 1
        try:
            time.sleep(self.hold_s)
            if first and self.fail_first:
                raise RuntimeError("model broke")
            return np.array([[float(p.inputs["x"])] for p in prepared], dtype=np.float32)
        finally:
            with self.lock:
                self.inside -= 1


def item(x: int) -> Prepared:
    return Prepared({"x": x})


async def submit_all(batcher: MicroBatcher, n: int) -> list[object]:
    async def one(i: int) -> object:
        try:
            return float((await batcher.submit([item(i)]))[0, 0])
        except RuntimeError as exc:
            return exc

    try:
        return await asyncio.gather(*(one(i) for i in range(n)))
    finally:
        await batcher.close()


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_workers_run_that_many_forward_passes_at_once(workers: int) -> None:
    probe = Probe()
    batcher = MicroBatcher(probe, max_batch=2, max_wait_s=0.001, workers=workers)
    results = asyncio.run(submit_all(batcher, 12))
    assert results == [float(i) for i in range(12)]  # every caller gets its own row
    assert probe.most_inside == workers
    assert sum(probe.batches) == 12 and max(probe.batches) <= 2


def test_a_failed_pass_frees_its_worker_and_fails_only_its_callers() -> None:
    probe = Probe(fail_first=True)
    batcher = MicroBatcher(probe, max_batch=4, max_wait_s=0.001, workers=1)
    results = asyncio.run(submit_all(batcher, 10))
    failed = [r for r in results if isinstance(r, RuntimeError)]
    assert len(failed) == probe.batches[0]
    assert [r for r in results if not isinstance(r, RuntimeError)] == [
        float(i) for i in range(probe.batches[0], 10)
    ]


def test_close_lets_running_passes_deliver() -> None:
    probe = Probe(hold_s=0.2)

    async def scenario() -> float:
        batcher = MicroBatcher(probe, max_batch=1, max_wait_s=0.0, workers=2)
        call = asyncio.ensure_future(batcher.submit([item(7)]))
        while not probe.batches:
            await asyncio.sleep(0.01)
        await batcher.close()  # the pass already running finishes
        return float((await call)[0, 0])

    assert asyncio.run(scenario()) == 7.0


def test_bad_worker_count_is_refused() -> None:
    with pytest.raises(ValueError, match="workers"):
        MicroBatcher(Probe(), max_batch=1, max_wait_s=0.0, workers=0)


@pytest.mark.parametrize(
    ("settings", "cpus", "expected"),
    [
        ({}, 2, (2, 1)),  # CPU, auto: one single-threaded worker per CPU
        ({}, 1, (1, 1)),
        ({}, 8, (4, 2)),  # at most 4 auto workers; more CPUs become threads
        ({}, 64, (4, 16)),
        ({"torch_threads": 2}, 2, (1, 2)),  # the threads given; workers fill the CPUs
        ({"torch_threads": 2}, 8, (4, 2)),
        ({"torch_threads": 4}, 2, (1, 4)),  # never fewer than one worker
        ({"model_workers": 1}, 4, (1, 4)),  # the workers given; threads fill the CPUs
        ({"model_workers": 3, "torch_threads": 3}, 2, (3, 3)),  # both given: as given
    ],
)
def test_parallelism_splits_the_cpus(
    settings: dict[str, object], cpus: int, expected: tuple[int, int]
) -> None:
    assert EncoderConfig(**settings).parallelism(cpus) == expected  # type: ignore[arg-type]


def test_a_gpu_gets_one_worker_with_every_cpus_thread_unless_told() -> None:
    assert EncoderConfig(device="cuda").parallelism(8, gpu=True) == (1, 8)
    assert EncoderConfig(device="auto", model_workers=2).parallelism(8, gpu=True) == (2, 4)
    assert EncoderConfig(device="auto").parallelism(2, gpu=False) == (2, 1)  # auto found no GPU


def test_a_large_model_gets_one_worker_with_every_cpus_thread_unless_told() -> None:
    huge, small = 632_829_440, 22_565_376  # ImageBind-Huge vision; the shipped text tower
    assert EncoderConfig().parallelism(2, parameters=huge) == (1, 2)
    assert EncoderConfig().parallelism(2, parameters=small) == (2, 1)
    assert EncoderConfig(model_workers=2).parallelism(2, parameters=huge) == (2, 1)


def test_available_cpus_counts_a_cgroup_quota(tmp_path: Path) -> None:
    own = len(os.sched_getaffinity(0))
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # --cpus 1.5 -> 2
    assert available_cpus(str(tmp_path)) == min(own, 2)
    (tmp_path / "cpu.max").write_text("max 100000\n")  # no limit
    assert available_cpus(str(tmp_path)) == own
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("50000\n")  # cgroup v1, half a CPU
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert available_cpus(str(tmp_path)) == 1
    assert available_cpus(str(tmp_path / "absent")) == own


def test_a_slow_model_waits_longer_for_its_batch_to_fill() -> None:
    """With 500 ms passes, the wait stretches to 50 ms (a tenth), past max_wait's 1 ms: items
    arriving 2 ms apart still share a pass."""
    probe = Probe(hold_s=0.5)

    async def scenario() -> list[int]:
        batcher = MicroBatcher(probe, max_batch=8, max_wait_s=0.001, workers=1)
        await batcher.submit([item(0)])  # one pass teaches the batcher its duration
        assert batcher.pass_s >= 0.5
        calls = []
        for i in range(4):
            calls.append(asyncio.ensure_future(batcher.submit([item(i)])))
            await asyncio.sleep(0.002)
        await asyncio.gather(*calls)
        await batcher.close()
        return probe.batches[1:]

    assert asyncio.run(scenario()) == [4]

"""The SDK's per-call plumbing: chunks run at once and answered in order, a single chunk
awaited in the caller's own task, and no progress bar made for a call that shows none."""

from __future__ import annotations

import asyncio

import pytest
from synesthesia.client._transport import in_order
from synesthesia.client.encoder import _progress


def test_in_order_runs_chunks_at_once_and_keeps_their_order() -> None:
    async def go() -> tuple[list[tuple[int, bool]], list[tuple[int, bool]], list[object], int]:
        outer = asyncio.current_task()
        running = 0
        most = 0

        async def call(i: int, delay: float) -> tuple[int, bool]:
            nonlocal running, most
            running += 1
            most = max(most, running)
            await asyncio.sleep(delay)
            running -= 1
            return i, asyncio.current_task() is outer

        many = await in_order([call(0, 0.03), call(1, 0.0), call(2, 0.01)])
        one = await in_order([call(7, 0.0)])
        none: list[object] = await in_order([])
        return many, one, none, most

    many, one, none, most = asyncio.run(go())
    assert [i for i, _ in many] == [0, 1, 2]  # in order, though the first finished last
    assert most == 3  # all at once
    assert not any(in_caller for _, in_caller in many)  # each its own task
    assert one == [(7, True)]  # a single call: no task of its own
    assert none == []


def test_in_order_a_failing_chunk_fails_the_call() -> None:
    async def bad() -> int:
        raise ValueError("chunk 1 refused")

    async def good() -> int:
        return 1

    async def go() -> None:
        await in_order([good(), bad()])

    with pytest.raises(ValueError, match="chunk 1 refused"):
        asyncio.run(go())


def test_a_call_that_shows_no_progress_makes_no_bar(capsys: pytest.CaptureFixture[str]) -> None:
    with _progress(10, False, "embedding text") as bar:
        bar.update(4)
        bar.update(6)
    assert "embedding text" not in capsys.readouterr().err
    with _progress(10, True, "embedding text") as bar:
        bar.update(10)
    assert "embedding text" in capsys.readouterr().err

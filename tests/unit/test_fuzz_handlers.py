"""A bounded run of bench/fuzz_handlers.py in the suite: random and byte-mutated requests to every
SearchService RPC through a real server; none may end INTERNAL/UNKNOWN or hang."""

from __future__ import annotations

import asyncio

from bench.fuzz_handlers import BAD_CODES, GENERATORS, fuzz


def test_no_handler_input_is_internal_or_hangs() -> None:
    results = asyncio.run(fuzz(n=150, seed=1, hang_s=5.0))
    assert set(results) == set(GENERATORS)
    for name, counts in results.items():
        assert sum(counts[c] for c in BAD_CODES) == 0, (name, counts)
        assert counts["HANG"] == 0, (name, counts)
        assert counts["OK"] + counts["INVALID_ARGUMENT"] > 0, (name, counts)

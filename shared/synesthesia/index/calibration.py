"""Search effort chosen by measurement: how much efSearch (hnsw) or nprobe (ivf-pq) a collection
needs for a target recall@10 depends on its data and its size, so a collection measures it.

A calibration takes the collection's holdout (items kept out of the index: see collection.py)
as queries, finds their exact top-10 by brute force over every other live vector, then runs
them through the collection's search path over the index alone at rising efforts — ``lo``,
``lo·√2``, ``2·lo``, … — and records recall@10 at each. It stops at recall 0.999, at the
largest effort, or when one doubling of the effort gains less than 0.002 (the index's ceiling).
The resulting curve answers "the smallest effort reaching recall r with 95 % confidence" (the
sample mean less 1.645 standard errors) for the collection's ``recall_target`` and for a
query's own target. Nothing here takes a lock: the collection
supplies the vectors and the search."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")

#: The k the curve is measured for (recall@10).
K = 10
#: The curve stops once the sample reaches this recall …
STOP_RECALL = 0.999
#: … or when one doubling of the effort gains less than this.
PLATEAU_GAIN = 0.002
#: ``effort_for`` wants the target reached with 95 % confidence: mean - 1.645 standard errors.
CONFIDENCE_Z = 1.645
#: The largest efSearch tried (FAISS's cost grows about linearly with it).
HNSW_MAX_EFFORT = 8192


class Cancelled(Exception):
    """A calibration given up because its ``stop`` event was set."""


@dataclass(frozen=True)
class Point:
    """Recall@10 of the sample at one effort: its mean and the standard error of that mean."""

    effort: int
    recall: float
    stderr: float

    @property
    def assured(self) -> float:
        """A one-sided 95 % lower confidence bound on the recall."""
        return self.recall - CONFIDENCE_Z * self.stderr


@dataclass(frozen=True)
class Calibration:
    """A measured recall@10 curve, by rising effort."""

    count: int  # live items when measured
    curve: tuple[Point, ...]
    queries: int  # size of the sample
    seconds: float  # what the measurement took

    def effort_for(self, recall: float) -> int:
        """The smallest effort whose recall reaches ``recall`` with 95 % confidence; the best
        measured one when none does (the index cannot do better at any effort tried)."""
        for point in self.curve:
            if point.assured >= recall:
                return point.effort
        best = max(p.recall for p in self.curve)
        return next(p.effort for p in self.curve if p.recall == best)

    def recall_at(self, effort: int) -> float:
        """Mean recall measured at the largest effort not above ``effort`` (0 below them all)."""
        below = [p.recall for p in self.curve if p.effort <= effort]
        return below[-1] if below else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "curve": [[p.effort, p.recall, p.stderr] for p in self.curve],
            "queries": self.queries,
            "seconds": self.seconds,
        }

    @classmethod
    def from_json(cls, data: Any) -> Calibration | None:
        """None for a missing or unreadable record."""
        if not isinstance(data, Mapping):
            return None
        try:
            curve = tuple(Point(int(e), float(r), float(se)) for e, r, se in data["curve"])
            if not curve:
                return None
            return cls(int(data["count"]), curve, int(data["queries"]), float(data["seconds"]))
        except (KeyError, TypeError, ValueError):
            return None


def efforts(lo: int, hi: int) -> Iterator[int]:
    """``lo``, ``lo·√2``, ``2·lo``, … rounded and distinct, ending with ``hi``."""
    x, last = float(max(lo, 1)), 0
    while True:
        e = min(round(x), hi)
        if e > last:
            yield e
            last = e
        if e >= hi:
            return
        x *= math.sqrt(2)


def until(stop: threading.Event | None, chunks: Iterable[T]) -> Iterator[T]:
    """``chunks``, raising Cancelled as soon as ``stop`` is set."""
    for chunk in chunks:
        if stop is not None and stop.is_set():
            raise Cancelled
        yield chunk


def exact_top_k(
    chunks: Iterable[tuple[np.ndarray, np.ndarray]],
    queries: np.ndarray,
    skip: np.ndarray,
    k: int,
    l2: bool,
) -> tuple[np.ndarray, int]:
    """Exact top-``k`` labels [len(queries), k] (-1 where fewer exist) over ``chunks`` of
    (labels, vectors), the labels in ``skip`` left out; and the largest label seen."""
    nq = len(queries)
    best_s = np.full((nq, k), -np.inf, dtype=np.float32)
    best_l = np.full((nq, k), -1, dtype=np.int64)
    top = -1
    for all_labels, all_vecs in chunks:
        if not len(all_labels):
            continue
        top = max(top, int(all_labels.max()))
        keep = ~np.isin(all_labels, skip)
        labels, vecs = all_labels[keep], all_vecs[keep]
        scores = queries @ vecs.T
        if l2:  # rank by -|x - q|^2 = 2 q.x - |x|^2 - |q|^2 (the last term is the same per row)
            scores = 2 * scores - np.einsum("ij,ij->i", vecs, vecs)[None, :]
        all_s = np.concatenate([best_s, scores.astype(np.float32, copy=False)], axis=1)
        all_l = np.concatenate([best_l, np.broadcast_to(labels, (nq, len(labels)))], axis=1)
        pick = np.argpartition(-all_s, k - 1, axis=1)[:, :k]
        best_s = np.take_along_axis(all_s, pick, axis=1)
        best_l = np.take_along_axis(all_l, pick, axis=1)
    best_l[~np.isfinite(best_s)] = -1
    return best_l, top


def sample_recall(
    found: Iterable[Iterable[int]], truth: np.ndarray, ignored: Callable[[int], bool], effort: int
) -> Point:
    """Recall of ``found`` (labels per query) against ``truth`` rows. An ``ignored`` label - one
    the exact scan did not see (written after it, or a query that has since moved into the
    index) - shrinks that query's denominator instead of counting as a miss."""
    per_query = []
    for got, want_row in zip(found, truth, strict=True):
        want = {int(x) for x in want_row if x >= 0}
        labels = [x for x in got if not ignored(x)]
        denominator = min(len(want), K - (len(list(got)) - len(labels)))
        if denominator > 0:
            per_query.append(len(want.intersection(labels)) / denominator)
    if not per_query:
        return Point(effort, 1.0, 0.0)
    r = np.asarray(per_query)
    stderr = float(r.std(ddof=1) / math.sqrt(len(r))) if len(r) > 1 else 0.0
    return Point(effort, float(r.mean()), stderr)


def measure(
    count: int,
    recall_at: Callable[[int], Point],
    lo: int,
    hi: int,
    queries: int,
    also: int | None = None,
    started: float | None = None,
) -> Calibration:
    """Runs the effort ladder from ``lo`` to ``hi`` (see the module doc) with ``recall_at(effort)``
    = the sample's recall@10 at that effort; ``also`` is measured too (an explicit effort)."""
    t0 = time.perf_counter() if started is None else started
    curve: list[Point] = []
    for effort in efforts(lo, hi):
        curve.append(recall_at(effort))
        got = curve[-1].recall
        if got >= STOP_RECALL or (len(curve) >= 3 and got - curve[-3].recall < PLATEAU_GAIN):
            break
    if also is not None and all(p.effort != also for p in curve):
        curve.append(recall_at(also))
        curve.sort(key=lambda p: p.effort)
    return Calibration(count, tuple(curve), queries, time.perf_counter() - t0)

"""One collection: SQLite rows (truth) + a FAISS index and an in-memory mirror (derived).

Write path: validate the whole batch -> one SQLite transaction (committed = acknowledged) -> apply
to the FAISS index and the mirror. Both steps run under the collection's write lock, so queries
always see SQLite and the index agree. If applying to FAISS fails after the commit, the index is
rebuilt from SQLite before the lock is released.

Query strategy with filters (so a selective filter still returns k results):
1. the filter is evaluated over the mirror (id, modality, metadata of every live item) giving
   the allowed labels;
2. if the index is exact (flat, or ivf-pq before training) FAISS searches with an
   ``IDSelectorBatch`` over them - exact by construction;
3. otherwise, if at most ``exact_limit`` labels are allowed, their vectors are read from SQLite
   and scored exactly with numpy;
4. otherwise FAISS searches with the selector and efSearch / nprobe widened by
   1/selectivity (capped); if that still returns fewer than min(k, allowed) hits, step 3 runs
   over all allowed labels (slow, but never short).
Removed-but-not-compacted HNSW labels are never in the allowed set; without a filter they are
excluded with ``IDSelectorNot``.

Search effort (efSearch / nprobe) of an approximate index, per query (see calibration.py):
1. a query's own ``recall`` target: the smallest calibrated effort reaching it;
2. else the collection's explicit ``ef_search`` / ``nprobe`` when it is positive;
3. else the smallest calibrated effort reaching the collection's ``recall_target``;
4. before the first calibration: ``UNCALIBRATED_EFFORT`` (or the explicit value, for 1).
Calibration queries must be fresh: a stored vector finds its own neighbours through the graph
edges (or quantisers) built from it, which overstates recall (measured: 0.97 for stored vectors
against 0.84 for new ones at the same efSearch). So from ``calibration_min_items`` live items on,
an approximate collection keeps a *holdout*: up to ``calibration_queries`` items (a reservoir
sample of the items written since) that are never added to the FAISS index nor used to train
it; every query scores them exactly and merges them in, so they are found like any item, and a
calibration uses them as its queries against the index alone.
A calibration runs off the query path (the manager's background thread, or :meth:`calibrate`):
when none exists, after a rebuild, once writes have paused for ``calibration_settle_s`` if the
live count has changed by ``calibration_drift`` since the last, and while writes go on when it
has changed by ``calibration_growth`` (or by the drift with the last one
``calibration_max_age_s`` old) - but then spending at most ``calibration_duty`` of the time.
A snapshot keeps the calibration (and the holdout), so a restart reuses it."""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from synesthesia.errors import NotFound
from synesthesia.index import calibration
from synesthesia.index.calibration import Calibration
from synesthesia.index.faiss_index import (
    SnapshotError,
    VectorIndex,
    read_snapshot,
    train_threshold,
    write_snapshot,
)
from synesthesia.index.filters import Filter, parse_filter
from synesthesia.index.postings import Postings
from synesthesia.index.rwlock import RWLock
from synesthesia.index.store import Store
from synesthesia.index.types import (
    DEFAULT_RECALL_TARGET,
    EFFORT_PARAM,
    MAX_K,
    UNCALIBRATED_EFFORT,
    CollectionInfo,
    CollectionSpec,
    Hit,
    IndexKind,
    Metadata,
    Metric,
    StoredItem,
    UpsertItem,
)
from synesthesia.index.validate import (
    ValidItem,
    as_matrix,
    as_vector,
    check_id,
    check_ids,
    check_items,
    check_k,
    check_recall,
)
from synesthesia.modality import Modality

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tuning:
    """Knobs shared by all collections of a manager."""

    exact_limit: int = 4096  # allowed sets up to this size are scored exactly from SQLite
    compact_fraction: float = 0.2  # rebuild hnsw when this fraction of its labels is dead …
    compact_min_dead: int = 1000  # … and at least this many are
    calibration_queries: int = 200  # holdout size: the queries of a calibration
    calibration_min_items: int = 1000  # no holdout and no calibration below this many items
    calibration_growth: float = 1.25  # recalibrate when the live count changed by this factor …
    calibration_drift: float = 0.02  # … or by this fraction, once writes paused for …
    calibration_settle_s: float = 5.0  # … this long (or the last calibration is older than …
    calibration_max_age_s: float = 120.0  # … this)
    calibration_duty: float = 0.1  # while writes go on, at most this share of the time
    calibrate_in_background: bool = True  # the manager's thread; False: only calibrate() calls
    calibration_poll_s: float = 0.5  # how often that thread looks for due calibrations


@dataclass(frozen=True)
class UpsertResult:
    count: int
    last_seq: int  # the seq of the last item written; everything up to it is durable


class Collection:
    def __init__(self, spec: CollectionSpec, store: Store, snapshot_path: Path, tuning: Tuning):
        self.spec = spec
        self._store = store
        self._snapshot_path = snapshot_path
        self._tuning = tuning
        self._lock = RWLock()
        self._snapshot_mutex = threading.Lock()
        self._index = VectorIndex(spec)
        self._label_of: dict[str, int] = {}
        self._rows: dict[int, tuple[str, Modality, Metadata]] = {}
        self._postings = Postings()
        self._dead: set[int] = set()
        self._dead_selector: Any = None
        self._applied_seq = 0
        self._snapshot_seq = 0
        self.dropped = False
        self._calibration: Calibration | None = None
        self._calibration_stale = True  # none yet, or measured on an index since rebuilt
        self._calibrated_at = 0.0  # time.monotonic() when the last one finished
        self._calibrate_mutex = threading.Lock()
        self._measuring = False  # a calibration is using the holdout: leave it as it is
        self._writers = 0  # writes under way or waiting for the lock …
        self._writers_mutex = threading.Lock()
        self._generation = 0  # bumped by every rebuild
        self._holdout: dict[int, np.ndarray] = {}  # label -> vector, never in the FAISS index
        self._holdout_arrays: tuple[np.ndarray, np.ndarray] | None = None  # cached stack of it
        self._rng = np.random.default_rng(zlib.crc32(spec.name.encode()))
        self._last_write = time.monotonic()  # … and when the last one finished

    # -- loading / rebuilding ------------------------------------------------------------------

    def load(self) -> None:
        """Mirror from SQLite; index from the snapshot + replay, or rebuilt if that fails."""
        with self._lock.write():
            self._load_mirror()
            try:
                self._load_snapshot()
            except SnapshotError as exc:
                if self._snapshot_path.exists():
                    log.warning("collection %s: %s; rebuilding from SQLite", self.spec.name, exc)
                self._rebuild()
            if self._index.needs_training and len(self._rows) >= train_threshold(self.spec):
                self._rebuild()

    def _load_mirror(self) -> None:
        self._label_of.clear()
        self._rows.clear()
        self._postings.clear()
        for item_id, seq, modality, metadata in self._store.live_rows(self.spec.name):
            self._label_of[item_id] = seq
            self._rows[seq] = (item_id, modality, metadata)
            self._postings.add(seq, modality, metadata)
        self._applied_seq = self._store.last_seq(self.spec.name)

    def _load_snapshot(self) -> None:
        vi, seq, header = read_snapshot(self._snapshot_path, self.spec)
        if seq > self._applied_seq:
            raise SnapshotError(f"snapshot covers seq {seq}, newer than the database's")
        try:
            held = np.unique(np.asarray(header.get("holdout", []), dtype=np.int64))
        except (TypeError, ValueError):
            raise SnapshotError("bad holdout in the snapshot header") from None
        in_index = vi.labels()
        covered = np.union1d(in_index, held)
        if len(covered) and int(covered.max()) > seq:
            raise SnapshotError("snapshot holds labels newer than the seq it claims")
        live = np.fromiter(self._rows, dtype=np.int64, count=len(self._rows))
        missing = np.setdiff1d(live, covered, assume_unique=True)
        if len(missing) and int(missing.min()) <= seq:
            raise SnapshotError("snapshot lacks items it should cover")
        extra = np.setdiff1d(in_index, live, assume_unique=True)
        held_seqs, held_vecs = self._store.vectors_for(
            self.spec.name, self.spec.dim, np.setdiff1d(np.intersect1d(held, live), in_index)
        )
        self._set_holdout(dict(zip(held_seqs.tolist(), held_vecs, strict=True)))
        for seqs, vecs in self._store.iter_vectors(self.spec.name, self.spec.dim, after_seq=seq):
            vi.add(seqs, vecs)
        dead: set[int] = set()
        if vi.supports_remove:
            vi.remove(extra)
        else:
            dead = set(extra.tolist())
        self._index, self._dead, self._dead_selector = vi, dead, None
        self._snapshot_seq = seq
        # the graph is the one measured: keep its curve (the growth rules decide on a new one)
        self._calibration = Calibration.from_json(header.get("calibration"))
        self._calibration_stale = self._calibration is None
        log.info(
            "collection %s: snapshot at seq %d + %d replayed, %d removed",
            self.spec.name,
            seq,
            len(missing),
            len(extra),
        )

    def _rebuild(self) -> None:
        """New index from every live row in SQLite (caller holds the write lock)."""
        name, dim = self.spec.name, self.spec.dim
        chunks = list(self._store.iter_vectors(name, dim))
        n = sum(len(s) for s, _ in chunks)
        chunks = self._holdout_for_rebuild(chunks)
        if self.spec.kind is IndexKind.IVF_PQ and n >= train_threshold(self.spec):
            sample = np.concatenate([v for _, v in chunks])
            vi = VectorIndex.trained_from(self.spec, sample)
            del sample
        else:
            vi = VectorIndex(self.spec)
        for seqs, vecs in chunks:
            vi.add(seqs, vecs)
        self._index, self._dead, self._dead_selector = vi, set(), None
        self._generation += 1
        self._calibration_stale = True  # a new index: the old curve is only an estimate now
        log.info("collection %s: index rebuilt from %d rows (%s)", name, n, type(vi.inner).__name__)

    def _holdout_for_rebuild(
        self, chunks: list[tuple[np.ndarray, np.ndarray]]
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Keeps the live part of the holdout (or draws a new one uniformly when there is none)
        and returns ``chunks`` without it: what the new index gets."""
        kept = {lb: v for lb, v in self._holdout.items() if lb in self._rows}
        t = self._tuning
        if not kept and self._holds and len(self._rows) >= t.calibration_min_items:
            live = np.fromiter(self._rows, dtype=np.int64, count=len(self._rows))
            size = min(t.calibration_queries, len(live))
            draw = set(self._rng.choice(live, size, replace=False).tolist())
            for seqs, vecs in chunks:
                kept.update((int(s), vecs[i].copy()) for i, s in enumerate(seqs) if s in draw)
        self._set_holdout(kept)
        if not kept:
            return chunks
        held = np.fromiter(kept, dtype=np.int64, count=len(kept))
        out = []
        for seqs, vecs in chunks:
            keep = ~np.isin(seqs, held)
            out.append((seqs, vecs) if keep.all() else (seqs[keep], vecs[keep]))
        return out

    @property
    def _holds(self) -> bool:
        """Whether this kind keeps a holdout (the approximate ones)."""
        return self.spec.kind in EFFORT_PARAM

    def _set_holdout(self, holdout: dict[int, np.ndarray]) -> None:
        self._holdout = holdout
        self._holdout_arrays = None

    def _hold_out(self, labels: np.ndarray, vecs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Reservoir sampling of new items into the holdout; returns what goes into the index
        (the other new items, and any holdout member a new one replaced)."""
        t, n = self._tuning, len(self._rows)
        cap = t.calibration_queries
        if not self._holds or n < t.calibration_min_items or self._measuring:
            return labels, vecs
        picked = self._rng.random(len(labels)) < cap / n
        free = min(max(cap - len(self._holdout), 0), len(labels))
        picked[self._rng.choice(len(labels), size=free, replace=False)] = True
        chosen = self._rng.permutation(np.flatnonzero(picked))
        if not len(chosen):
            return labels, vecs
        keep = np.ones(len(labels), dtype=bool)
        out_l, out_v = [], []
        for i in chosen:
            if len(self._holdout) >= cap:
                members = list(self._holdout)
                evict = members[int(self._rng.integers(len(members)))]
                out_l.append(evict)
                out_v.append(self._holdout.pop(evict))
            self._holdout[int(labels[i])] = vecs[i].copy()
            keep[i] = False
        self._holdout_arrays = None
        return (
            np.concatenate([labels[keep], np.asarray(out_l, dtype=np.int64)]),
            np.concatenate([vecs[keep], np.asarray(out_v, np.float32).reshape(-1, vecs.shape[1])]),
        )

    # -- writes --------------------------------------------------------------------------------

    def upsert(self, items: Sequence[UpsertItem]) -> UpsertResult:
        valid = check_items(self.spec, items)
        if not valid:
            return UpsertResult(0, self._applied_seq)
        with self._writing():
            self._check_alive()
            seqs = self._store.upsert(self.spec.name, valid)
            self._apply(lambda: self._apply_upsert(valid, seqs))
            self._applied_seq = seqs[-1]
            self._maintain()
            return UpsertResult(len(valid), seqs[-1])

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """The write lock; a writer counts from before it waits for the lock to after it is
        done, so a write held up (by a snapshot, say) does not look like a pause in writes."""
        with self._writers_mutex:
            self._writers += 1
        try:
            with self._lock.write():
                yield
        finally:
            with self._writers_mutex:
                self._writers -= 1
                self._last_write = time.monotonic()

    def _apply_upsert(self, valid: list[ValidItem], seqs: list[int]) -> None:
        old = [self._label_of[v.id] for v in valid if v.id in self._label_of]
        self._forget(old)
        for v, s in zip(valid, seqs, strict=True):
            self._label_of[v.id] = s
            self._rows[s] = (v.id, v.modality, v.metadata)
            self._postings.add(s, v.modality, v.metadata)
        labels = np.asarray(seqs, dtype=np.int64)
        self._index.add(*self._hold_out(labels, np.stack([v.vector for v in valid])))

    def _forget(self, labels: list[int]) -> None:
        for label in labels:
            item_id, modality, metadata = self._rows.pop(label)
            self._label_of.pop(item_id, None)
            self._postings.remove(label, modality, metadata)
        held = {lb for lb in labels if lb in self._holdout}
        if held:
            self._set_holdout({lb: v for lb, v in self._holdout.items() if lb not in held})
            labels = [lb for lb in labels if lb not in held]
        if self._index.supports_remove:
            self._index.remove(np.asarray(labels, dtype=np.int64))
        elif labels:
            self._dead.update(labels)
            self._dead_selector = None

    def _apply(self, change: Any) -> None:
        try:
            change()
        except Exception:
            log.exception("collection %s: index update failed; rebuilding", self.spec.name)
            self._load_mirror()
            self._rebuild()

    def delete(self, ids: Sequence[str]) -> list[str]:
        """Tombstones the given ids; unknown ids are ignored. Returns the ids deleted."""
        ids = check_ids(ids)
        with self._writing():
            self._check_alive()
            return self._delete_locked(ids)

    def delete_where(self, flt: Mapping[str, Any] | str | Filter) -> list[str]:
        """Deletes every live item matching the filter (an empty filter deletes everything)."""
        f = flt if isinstance(flt, Filter) else parse_filter(flt)
        with self._writing():
            self._check_alive()
            ids = [self._rows[lb][0] for lb in self._matching(f, None)]
            return self._delete_locked(ids)

    def _delete_locked(self, ids: list[str]) -> list[str]:
        if not ids:
            return []
        deleted = self._store.delete(self.spec.name, ids)
        if deleted:
            self._applied_seq = self._store.last_seq(self.spec.name)
            self._apply(lambda: self._forget([self._label_of[i] for i in deleted]))
            self._maintain()
        return deleted

    def _maintain(self) -> None:
        if self._index.needs_training and len(self._rows) >= train_threshold(self.spec):
            log.info("collection %s: %d vectors, training ivf-pq", self.spec.name, len(self._rows))
            self._rebuild()
        elif self._needs_compaction():
            self._rebuild()
            self._store.purge_tombstones(self.spec.name)

    def _needs_compaction(self) -> bool:
        dead, t = len(self._dead), self._tuning
        return dead >= t.compact_min_dead and dead > t.compact_fraction * self._index.ntotal

    def compact(self) -> None:
        """Rebuilds the index without dead labels and purges tombstones from SQLite."""
        with self._writing():
            self._check_alive()
            self._rebuild()
            self._store.purge_tombstones(self.spec.name)

    # -- reads ---------------------------------------------------------------------------------

    def get(self, ids: Sequence[str]) -> list[StoredItem]:
        """Stored items in request order; ids that do not exist are left out."""
        ids = check_ids(ids)
        self._check_alive()
        found = self._store.get(self.spec.name, self.spec.dim, ids)
        return [found[i] for i in dict.fromkeys(ids) if i in found]

    def query(
        self,
        vector: Any,
        k: int,
        flt: Mapping[str, Any] | str | Filter | None = None,
        recall: float | None = None,
    ) -> list[Hit]:
        """The k nearest live items; ``recall``: this query's own recall@10 target (None: the
        collection's effort, see the module doc)."""
        k = check_k(k)
        q = as_vector(vector, self.spec.dim, 0, "query")
        f = flt if isinstance(flt, Filter) else parse_filter(flt)
        recall = check_recall(recall)
        with self._lock.read():
            self._check_alive()
            return self._hits(self._ranked(q, k, f, None, self._effort(recall)))

    def query_batch(
        self,
        vectors: Any,
        k: int,
        flt: Mapping[str, Any] | str | Filter | None = None,
        recall: float | None = None,
    ) -> list[list[Hit]]:
        """``query`` of every row of ``vectors`` (n x dim) with one FAISS call: the same hits,
        in row order. A bad row is InvalidInput naming it ("item 3 (id 'query'): …")."""
        k = check_k(k)
        qs = as_matrix(vectors, self.spec.dim, "query")
        f = flt if isinstance(flt, Filter) else parse_filter(flt)
        recall = check_recall(recall)
        with self._lock.read():
            self._check_alive()
            ranked = self._ranked_rows(qs, k, f, None, self._effort(recall))
            return [self._hits(r) for r in ranked]

    def query_by_id(
        self,
        item_id: str,
        k: int,
        flt: Mapping[str, Any] | str | Filter | None = None,
        recall: float | None = None,
    ) -> list[Hit]:
        """Neighbours of a stored item, the item itself excluded; unknown id -> NotFound."""
        k = check_k(k)
        check_id(item_id)
        f = flt if isinstance(flt, Filter) else parse_filter(flt)
        recall = check_recall(recall)
        with self._lock.read():
            self._check_alive()
            label = self._label_of.get(item_id)
            if label is None:
                raise NotFound(f"item {item_id!r} is not in collection {self.spec.name!r}")
            _, vecs = self._store.vectors_for(self.spec.name, self.spec.dim, [label])
            return self._hits(self._ranked(vecs[0], k, f, label, self._effort(recall)))

    def _effort(self, recall: float | None) -> int:
        """efSearch / nprobe for a query (0 for kinds without one); see the module doc."""
        kind = self.spec.kind
        if kind not in EFFORT_PARAM:
            return 0
        cal = self._calibration
        if recall is not None and cal is not None:
            return cal.effort_for(recall)
        explicit = int(self.spec.params.get(EFFORT_PARAM[kind], 0))
        if explicit:
            return explicit
        if cal is not None:
            return cal.effort_for(self.recall_target)
        return UNCALIBRATED_EFFORT[kind]

    @property
    def recall_target(self) -> float:
        return int(self.spec.params.get("recall_target", DEFAULT_RECALL_TARGET)) / 1000

    def _hits(self, ranked: list[tuple[int, float]]) -> list[Hit]:
        return [self._hit(label, score) for label, score in ranked]

    def _ranked(
        self,
        q: np.ndarray,
        k: int,
        f: Filter,
        exclude: int | None,
        effort: int,
        holdout: bool = True,
    ) -> list[tuple[int, float]]:
        """(label, score) of the top k, best first (caller holds the read lock). ``holdout``
        False searches the FAISS index alone (a calibration's view)."""
        return self._ranked_rows(q[None], k, f, exclude, effort, holdout)[0]

    def _ranked_rows(
        self,
        qs: np.ndarray,
        k: int,
        f: Filter,
        exclude: int | None,
        effort: int,
        holdout: bool = True,
    ) -> list[list[tuple[int, float]]]:
        """``_ranked`` of every row of ``qs`` (n x dim), searched with one FAISS call."""
        allowed: np.ndarray | None = None
        if not f.is_empty:
            allowed = self._matching(f, exclude)
            n_cand = len(allowed)
        else:
            n_cand = len(self._rows) - (exclude is not None)
        want = min(k, n_cand)
        if want <= 0:
            return [[] for _ in qs]
        if allowed is not None and not self._index.is_exact and n_cand <= self._tuning.exact_limit:
            return self._exact_rows(qs, k, allowed)
        selector: Any = None
        if allowed is not None:
            selector = faiss.IDSelectorBatch(allowed)
        elif self._dead or exclude is not None:
            selector = self._excluding(exclude)
        widen = min(len(self._rows) / max(n_cand, 1), 32.0)
        rerank = 1 if self._index.is_exact else int(self.spec.params.get("rerank", 1))
        fetch = min(k * rerank, MAX_K * 8)
        dist, labels = self._index.search(qs, fetch, selector, widen, effort)
        sign = -1.0 if self.spec.metric is Metric.L2 else 1.0
        held = self._holdout_scores(qs, allowed, exclude) if holdout and self._holdout else None
        entering = [False] * len(qs)
        if held is not None:  # the rows where a holdout item beats the fetch-th hit, at once
            if labels.shape[1] >= fetch:
                floors = np.where(labels[:, fetch - 1] >= 0, sign * dist[:, fetch - 1], -np.inf)
            else:
                floors = np.full(len(qs), -np.inf)
            entering = np.any(held[1] > floors[:, None], axis=1).tolist()
        out: list[list[tuple[int, float]]] = []
        # one conversion of the whole result to Python numbers, not one per hit
        for i, (q, row_l, row_d) in enumerate(zip(qs, labels.tolist(), dist.tolist(), strict=True)):
            hits = [(lb, sign * d) for lb, d in zip(row_l, row_d, strict=True) if lb >= 0]
            if held is not None and entering[i]:
                hits = self._merge_holdout(hits, held[0], held[1][i], fetch)
            if len(hits) < want:
                log.info(
                    "collection %s: approximate search short (%d < %d); exact scan",
                    self.spec.name,
                    len(hits),
                    want,
                )
                if allowed is None:
                    allowed = np.fromiter(
                        (lb for lb in self._rows if lb != exclude), dtype=np.int64
                    )
                out.append(self._exact(q, k, allowed))
            elif rerank > 1:  # compressed distances are coarse: re-score the candidates exactly
                out.append(self._exact(q, k, np.fromiter((lb for lb, _ in hits), dtype=np.int64)))
            else:
                out.append(hits[:k])
        return out

    def _holdout_scores(
        self, qs: np.ndarray, allowed: np.ndarray | None, exclude: int | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(labels, scores [n x held]) of the holdout items that may be hits (not ``exclude``,
        in ``allowed``), scored exactly against every row of ``qs``."""
        if self._holdout_arrays is None:
            held = np.fromiter(self._holdout, dtype=np.int64, count=len(self._holdout))
            self._holdout_arrays = (held, np.stack(list(self._holdout.values())))
        labels, vecs = self._holdout_arrays
        if allowed is not None or exclude in self._holdout:  # else all of them, uncopied
            ok = labels != (-1 if exclude is None else exclude)
            if allowed is not None:
                ok &= np.isin(labels, allowed)
            labels, vecs = labels[ok], vecs[ok]
        # one product per query (a matrix-vector product stays on this thread; a matrix
        # product would wake BLAS's thread pool beside the search lanes)
        if self.spec.metric is Metric.IP:
            return labels, np.stack([vecs @ q for q in qs])
        return labels, np.stack([-np.square(vecs - q).sum(axis=1) for q in qs])

    @staticmethod
    def _merge_holdout(
        hits: list[tuple[int, float]], labels: np.ndarray, scores: np.ndarray, n: int
    ) -> list[tuple[int, float]]:
        """``hits`` (best first) with the holdout items (``labels``, exactly ``scores``) merged
        in; the best n. Only an item that beats the n-th hit can enter (a tie keeps the hit)."""
        floor = hits[n - 1][1] if len(hits) >= n else -np.inf
        better = np.flatnonzero(scores > floor)
        if better.size == 0:
            return hits[:n]
        more = zip(labels[better].tolist(), scores[better].tolist(), strict=True)
        return sorted([*hits, *more], key=lambda h: -h[1])[:n]

    def _matching(self, f: Filter, exclude: int | None) -> np.ndarray:
        """Live labels matching ``f`` (``exclude`` left out), narrowed by the postings first."""
        cand = self._postings.candidates(f, self._label_of)
        source = self._rows.keys() if cand is None else cand
        rows = self._rows
        return np.fromiter(
            (lb for lb in source if lb != exclude and f.matches(*rows[lb])), dtype=np.int64
        )

    def _excluding(self, exclude: int | None) -> Any:
        if exclude is None:
            if self._dead_selector is None:
                dead = np.fromiter(self._dead, dtype=np.int64, count=len(self._dead))
                batch = faiss.IDSelectorBatch(dead)
                self._dead_selector = (faiss.IDSelectorNot(batch), batch)
            return self._dead_selector[0]
        labels = np.fromiter([*self._dead, exclude], dtype=np.int64)
        batch = faiss.IDSelectorBatch(labels)
        sel = faiss.IDSelectorNot(batch)
        sel.referenced_batch = batch  # type: ignore[attr-defined]  # keeps the inner one alive
        return sel

    def _exact(self, q: np.ndarray, k: int, allowed: np.ndarray) -> list[tuple[int, float]]:
        return self._exact_rows(q[None], k, allowed)[0]

    def _exact_rows(
        self, qs: np.ndarray, k: int, allowed: np.ndarray
    ) -> list[list[tuple[int, float]]]:
        """Every row of ``qs`` scored exactly against ``allowed`` (read from SQLite once)."""
        seqs, vecs = self._store.vectors_for(self.spec.name, self.spec.dim, allowed)
        ip = self.spec.metric is Metric.IP
        out = []
        for q in qs:
            scores = vecs @ q if ip else -np.square(vecs - q).sum(axis=1)
            top = np.argsort(-scores, kind="stable")[:k]
            out.append([(int(seqs[i]), float(scores[i])) for i in top])
        return out

    def _hit(self, label: int, score: float) -> Hit:
        item_id, modality, metadata = self._rows[label]
        return Hit(id=item_id, score=score, modality=modality, metadata=dict(metadata))

    # -- calibration ---------------------------------------------------------------------------

    def _calibratable(self) -> bool:
        """An approximate index with enough items, and holdout queries to measure it with."""
        return (
            self._holds
            and not self._index.is_exact
            and self._index.ntotal > 2 * calibration.K
            and len(self._holdout) >= min(self._tuning.calibration_queries, 50)
        )

    def calibration_due(self, now: float) -> bool:
        """Whether the effort curve should be measured again (see the module doc)."""
        if self.dropped or not self._calibratable():
            return False
        n, cal, t = len(self._rows), self._calibration, self._tuning
        if cal is None or self._calibration_stale:
            return True
        drifted = abs(n - cal.count) >= t.calibration_drift * cal.count
        if not self._writers and now - self._last_write >= t.calibration_settle_s:
            return drifted  # writes paused: bring it up to date
        since = now - self._calibrated_at
        if since < cal.seconds * (1 / t.calibration_duty - 1):
            return False  # writes going on: the calibrator keeps to its share of the time
        grown = n >= cal.count * t.calibration_growth or n * t.calibration_growth <= cal.count
        return grown or (drifted and since >= t.calibration_max_age_s)

    def calibrate(self, stop: threading.Event | None = None) -> Calibration | None:
        """Measures the recall@10 curve of the index with the holdout as queries and adopts it;
        None when the index is exact or has no holdout yet. Queries and writes go on meanwhile:
        the exact scan reads SQLite (one consistent snapshot) without the collection's lock, and
        each sample query takes the read lock like any query; writes leave the holdout alone
        meanwhile. ``stop`` set: give up."""
        with self._calibrate_mutex:
            t0 = time.perf_counter()
            with self._lock.read():
                self._check_alive()
                if not self._calibratable():
                    return None
                count, generation = len(self._rows), self._generation
                held = np.fromiter(self._holdout, dtype=np.int64, count=len(self._holdout))
                queries = np.stack(list(self._holdout.values()))
                self._measuring = True
            try:
                cal = self._measure(count, held, queries, stop, t0)
            finally:
                self._measuring = False
            self._calibration = cal
            self._calibration_stale = generation != self._generation
            self._calibrated_at = time.monotonic()
        self._log_calibration(cal)
        return cal

    def _measure(
        self,
        count: int,
        held: np.ndarray,
        queries: np.ndarray,
        stop: threading.Event | None,
        t0: float,
    ) -> Calibration:
        """The curve of :meth:`calibrate` (no lock held but the read lock of each query)."""
        kind = self.spec.kind
        truth, newest = calibration.exact_top_k(
            calibration.until(stop, self._store.iter_vectors(self.spec.name, self.spec.dim)),
            queries,
            held,
            calibration.K,
            self.spec.metric is Metric.L2,
        )
        no_filter = parse_filter(None)

        def ignored(label: int) -> bool:  # written after the exact scan
            return label > newest

        def recall_at(effort: int) -> calibration.Point:
            found = []
            for start in range(0, len(queries), 16):  # the read lock for 16 queries at a time
                if stop is not None and stop.is_set():
                    raise calibration.Cancelled
                with self._lock.read():
                    self._check_alive()
                    for q in queries[start : start + 16]:
                        ranked = self._ranked(q, calibration.K, no_filter, None, effort, False)
                        found.append([lb for lb, _ in ranked])
            return calibration.sample_recall(found, truth, ignored, effort)

        if kind is IndexKind.HNSW:
            lo, hi = calibration.K, calibration.HNSW_MAX_EFFORT
        else:
            lo, hi = 1, int(self.spec.params["nlist"])
        explicit = int(self.spec.params.get(EFFORT_PARAM[kind], 0)) or None
        return calibration.measure(count, recall_at, lo, hi, len(held), explicit, t0)

    def _log_calibration(self, cal: Calibration) -> None:
        kind = self.spec.kind
        explicit = int(self.spec.params.get(EFFORT_PARAM[kind], 0))
        effort = self._effort(None)
        log.info(
            "collection %s: calibrated on %d items in %.1f s: %s %d for recall@10 %.3f",
            self.spec.name,
            cal.count,
            cal.seconds,
            EFFORT_PARAM[kind],
            effort,
            cal.recall_at(effort),
        )
        if cal.recall_at(effort) < self.recall_target and not explicit:
            log.warning(
                "collection %s: recall_target %.3f is out of reach (best measured %.3f);"
                " a larger M / ef_construction (hnsw) or nlist (ivf-pq) would help",
                self.spec.name,
                self.recall_target,
                max(p.recall for p in cal.curve),
            )

    # -- snapshot / describe -------------------------------------------------------------------

    def snapshot(self) -> int:
        """Writes the index and the seq it covers; returns that seq. Queries continue meanwhile."""
        with self._snapshot_mutex, self._lock.read():
            self._check_alive()
            seq = self._applied_seq
            if seq == self._snapshot_seq and self._snapshot_path.exists():
                return seq
            cal = None if self._calibration_stale else self._calibration
            extra = {
                "calibration": cal.to_json() if cal is not None else None,
                "holdout": sorted(self._holdout),
            }
            write_snapshot(self._snapshot_path, self._index, seq, extra)
            self._snapshot_seq = seq
            return seq

    @property
    def pending_changes(self) -> int:
        """Changes not covered by the snapshot (what a restart would replay)."""
        return self._applied_seq - self._snapshot_seq

    def describe(self) -> CollectionInfo:
        with self._lock.read():
            self._check_alive()
            count, tombstones, payload = self._store.counts(self.spec.name)
            try:
                snap_bytes = self._snapshot_path.stat().st_size
            except FileNotFoundError:
                snap_bytes = 0
            return CollectionInfo(
                spec=self.spec,
                count=count,
                tombstones=tombstones,
                last_seq=self._applied_seq,
                snapshot_seq=self._snapshot_seq,
                bytes_on_disk=payload + snap_bytes,
                index_ntotal=self._index.ntotal + len(self._holdout),
                dead_in_index=len(self._dead),
                trained=not self._index.needs_training,
                **self._effort_info(),
            )

    def _effort_info(self) -> dict[str, Any]:
        if self.spec.kind not in EFFORT_PARAM or self._index.is_exact:
            return {"search_effort": 0, "measured_recall": 1.0, "calibrated_count": 0}
        effort, cal = self._effort(None), self._calibration
        return {
            "search_effort": effort,
            "measured_recall": cal.recall_at(effort) if cal else 0.0,
            "calibrated_count": cal.count if cal else 0,
        }

    def _check_alive(self) -> None:
        if self.dropped:
            raise NotFound(f"collection {self.spec.name!r} does not exist")

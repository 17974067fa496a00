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
excluded with ``IDSelectorNot``."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from synesthesia.errors import NotFound
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
    MAX_K,
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
)
from synesthesia.modality import Modality

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tuning:
    """Knobs shared by all collections of a manager."""

    exact_limit: int = 4096  # allowed sets up to this size are scored exactly from SQLite
    compact_fraction: float = 0.2  # rebuild hnsw when this fraction of its labels is dead …
    compact_min_dead: int = 1000  # … and at least this many are


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
        vi, seq = read_snapshot(self._snapshot_path, self.spec)
        if seq > self._applied_seq:
            raise SnapshotError(f"snapshot covers seq {seq}, newer than the database's")
        in_index = vi.labels()
        if len(in_index) and int(in_index.max()) > seq:
            raise SnapshotError("snapshot holds labels newer than the seq it claims")
        live = np.fromiter(self._rows, dtype=np.int64, count=len(self._rows))
        missing = np.setdiff1d(live, in_index, assume_unique=True)
        if len(missing) and int(missing.min()) <= seq:
            raise SnapshotError("snapshot lacks items it should cover")
        extra = np.setdiff1d(in_index, live, assume_unique=True)
        for seqs, vecs in self._store.iter_vectors(self.spec.name, self.spec.dim, after_seq=seq):
            vi.add(seqs, vecs)
        dead: set[int] = set()
        if vi.supports_remove:
            vi.remove(extra)
        else:
            dead = set(extra.tolist())
        self._index, self._dead, self._dead_selector = vi, dead, None
        self._snapshot_seq = seq
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
        if self.spec.kind is IndexKind.IVF_PQ and n >= train_threshold(self.spec):
            sample = np.concatenate([v for _, v in chunks])
            vi = VectorIndex.trained_from(self.spec, sample)
            del sample
        else:
            vi = VectorIndex(self.spec)
        for seqs, vecs in chunks:
            vi.add(seqs, vecs)
        self._index, self._dead, self._dead_selector = vi, set(), None
        log.info("collection %s: index rebuilt from %d rows (%s)", name, n, type(vi.inner).__name__)

    # -- writes --------------------------------------------------------------------------------

    def upsert(self, items: Sequence[UpsertItem]) -> UpsertResult:
        valid = check_items(self.spec, items)
        if not valid:
            return UpsertResult(0, self._applied_seq)
        with self._lock.write():
            self._check_alive()
            seqs = self._store.upsert(self.spec.name, valid)
            self._apply(lambda: self._apply_upsert(valid, seqs))
            self._applied_seq = seqs[-1]
            self._maintain()
            return UpsertResult(len(valid), seqs[-1])

    def _apply_upsert(self, valid: list[ValidItem], seqs: list[int]) -> None:
        old = [self._label_of[v.id] for v in valid if v.id in self._label_of]
        self._forget(old)
        labels = np.asarray(seqs, dtype=np.int64)
        self._index.add(labels, np.stack([v.vector for v in valid]))
        for v, s in zip(valid, seqs, strict=True):
            self._label_of[v.id] = s
            self._rows[s] = (v.id, v.modality, v.metadata)
            self._postings.add(s, v.modality, v.metadata)

    def _forget(self, labels: list[int]) -> None:
        for label in labels:
            item_id, modality, metadata = self._rows.pop(label)
            self._label_of.pop(item_id, None)
            self._postings.remove(label, modality, metadata)
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
        with self._lock.write():
            self._check_alive()
            return self._delete_locked(ids)

    def delete_where(self, flt: Mapping[str, Any] | str | Filter) -> list[str]:
        """Deletes every live item matching the filter (an empty filter deletes everything)."""
        f = flt if isinstance(flt, Filter) else parse_filter(flt)
        with self._lock.write():
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
        with self._lock.write():
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
        self, vector: Any, k: int, flt: Mapping[str, Any] | str | Filter | None = None
    ) -> list[Hit]:
        k = check_k(k)
        q = as_vector(vector, self.spec.dim, 0, "query")
        f = flt if isinstance(flt, Filter) else parse_filter(flt)
        with self._lock.read():
            self._check_alive()
            return self._search(q[None], k, f, exclude=None)[0]

    def query_batch(
        self, vectors: Any, k: int, flt: Mapping[str, Any] | str | Filter | None = None
    ) -> list[list[Hit]]:
        """``query`` of every row of ``vectors`` (n x dim) with one FAISS call: the same hits,
        in row order. A bad row is InvalidInput naming it ("item 3 (id 'query'): …")."""
        k = check_k(k)
        qs = as_matrix(vectors, self.spec.dim, "query")
        f = flt if isinstance(flt, Filter) else parse_filter(flt)
        with self._lock.read():
            self._check_alive()
            return self._search(qs, k, f, exclude=None)

    def query_by_id(
        self, item_id: str, k: int, flt: Mapping[str, Any] | str | Filter | None = None
    ) -> list[Hit]:
        """Neighbours of a stored item, the item itself excluded; unknown id -> NotFound."""
        k = check_k(k)
        check_id(item_id)
        f = flt if isinstance(flt, Filter) else parse_filter(flt)
        with self._lock.read():
            self._check_alive()
            label = self._label_of.get(item_id)
            if label is None:
                raise NotFound(f"item {item_id!r} is not in collection {self.spec.name!r}")
            _, vecs = self._store.vectors_for(self.spec.name, self.spec.dim, [label])
            return self._search(vecs[:1], k, f, exclude=label)[0]

    def _search(self, qs: np.ndarray, k: int, f: Filter, exclude: int | None) -> list[list[Hit]]:
        """The hits of every row of ``qs`` (n x dim), searched with one FAISS call."""
        allowed: np.ndarray | None = None
        if not f.is_empty:
            allowed = self._matching(f, exclude)
            n_cand = len(allowed)
        else:
            n_cand = len(self._rows) - (exclude is not None)
        want = min(k, n_cand)
        if want <= 0 or not len(qs):
            return [[] for _ in qs]
        if allowed is not None and not self._index.is_exact and n_cand <= self._tuning.exact_limit:
            return self._exact(qs, k, allowed)
        selector: Any = None
        if allowed is not None:
            selector = faiss.IDSelectorBatch(allowed)
        elif self._dead or exclude is not None:
            selector = self._excluding(exclude)
        widen = min(len(self._rows) / max(n_cand, 1), 32.0)
        rerank = 1 if self._index.is_exact else int(self.spec.params.get("rerank", 1))
        dist, labels = self._index.search(qs, min(k * rerank, MAX_K * 8), selector, widen)
        sign = -1.0 if self.spec.metric is Metric.L2 else 1.0
        out: list[list[Hit]] = []
        # one conversion of the whole result to Python numbers, not one per hit
        for q, row_l, row_d in zip(qs, labels.tolist(), dist.tolist(), strict=True):
            hits = [(lb, d) for lb, d in zip(row_l, row_d, strict=True) if lb >= 0]
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
                out.extend(self._exact(q[None], k, allowed))
            elif rerank > 1:  # compressed distances are coarse: re-score the candidates exactly
                cand = np.fromiter((lb for lb, _ in hits), dtype=np.int64)
                out.extend(self._exact(q[None], k, cand))
            else:
                out.append([self._hit(lb, sign * d) for lb, d in hits])
        return out

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

    def _exact(self, qs: np.ndarray, k: int, allowed: np.ndarray) -> list[list[Hit]]:
        """Every row of ``qs`` scored exactly against ``allowed`` (read from SQLite once)."""
        seqs, vecs = self._store.vectors_for(self.spec.name, self.spec.dim, allowed)
        ip = self.spec.metric is Metric.IP
        out: list[list[Hit]] = []
        for q in qs:
            scores = vecs @ q if ip else -np.square(vecs - q).sum(axis=1)
            top = np.argsort(-scores, kind="stable")[:k]
            out.append([self._hit(int(seqs[i]), float(scores[i])) for i in top])
        return out

    def _hit(self, label: int, score: float) -> Hit:
        item_id, modality, metadata = self._rows[label]
        return Hit(id=item_id, score=score, modality=modality, metadata=dict(metadata))

    # -- snapshot / describe -------------------------------------------------------------------

    def snapshot(self) -> int:
        """Writes the index and the seq it covers; returns that seq. Queries continue meanwhile."""
        with self._snapshot_mutex, self._lock.read():
            self._check_alive()
            seq = self._applied_seq
            if seq == self._snapshot_seq and self._snapshot_path.exists():
                return seq
            write_snapshot(self._snapshot_path, self._index, seq)
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
                index_ntotal=self._index.ntotal,
                dead_in_index=len(self._dead),
                trained=not self._index.needs_training,
            )

    def _check_alive(self) -> None:
        if self.dropped:
            raise NotFound(f"collection {self.spec.name!r} does not exist")

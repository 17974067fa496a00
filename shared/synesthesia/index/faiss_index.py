"""The derived FAISS index of one collection, and its snapshot file.

Labels are the items' ``seq`` numbers: a replaced item gets a new seq, so a label always names
one version of one item and is never reused. Kinds:
- flat: IndexFlat (exact); removal supported;
- hnsw: IndexHNSWFlat; FAISS cannot remove from HNSW, so removed labels stay in the graph and
  the collection filters them at query time until a compaction rebuilds the index;
- ivf-pq: IndexFlat until :func:`ivf_train_threshold` live vectors exist (exact search), then
  IndexIVFPQ trained once on all live vectors; removal supported. The trained IVF index is *not*
  wrapped in IndexIDMap2: IVF keeps ids natively, and IndexIDMap's remove_ids assumes the inner
  index renumbers after a removal, which IVF does not (labels would silently shift).

Snapshot file: ``SYNSNAP1`` + 4-byte header length + JSON header (seq covered, spec fingerprint,
sha256 and length of the payload, the collection's ``extra``) + ``faiss.serialize_index``
bytes. Written to a temporary file, fsynced, renamed over the old one and the directory fsynced,
so a crash leaves either the old or the new snapshot, never a torn one; the checksum catches
anything else."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import threading
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from synesthesia.index.types import CollectionSpec, IndexKind, Metric, ivf_train_threshold

log = logging.getLogger(__name__)

_MAGIC = b"SYNSNAP1"


class SnapshotError(Exception):
    """A snapshot that cannot be used (missing, torn, corrupt, or for another spec)."""


def _metric(metric: Metric) -> int:
    return faiss.METRIC_INNER_PRODUCT if metric is Metric.IP else faiss.METRIC_L2


class VectorIndex:
    """One FAISS index plus what it needs to be searched correctly. Not thread-safe: the
    collection's lock serialises writers against readers."""

    def __init__(self, spec: CollectionSpec, index: Any | None = None) -> None:
        self.spec = spec
        self.index = index if index is not None else self._empty(trained=False)
        self._inner: tuple[Any, Any] = (None, None)  # (index, its inner index), found once

    def _empty(self, trained: bool) -> Any:
        s, p = self.spec, self.spec.params
        if s.kind is IndexKind.HNSW:
            inner: Any = faiss.IndexHNSWFlat(s.dim, p["M"], _metric(s.metric))
            inner.hnsw.efConstruction = p["ef_construction"]
            inner.hnsw.efSearch = p["ef_search"]
        elif s.kind is IndexKind.IVF_PQ and trained:
            desc = f"IVF{p['nlist']},PQ{p['m']}x{p['nbits']}"
            return faiss.index_factory(s.dim, desc, _metric(s.metric))
        else:
            inner = faiss.IndexFlat(s.dim, _metric(s.metric))
        return faiss.IndexIDMap2(inner)

    @property
    def inner(self) -> Any:
        """The index under the id map, as its own FAISS type (looked up once per index:
        ``downcast_index`` costs microseconds, and every search asks)."""
        index = self.index
        if self._inner[0] is not index:
            inner = index
            if isinstance(index, faiss.IndexIDMap2):
                inner = faiss.downcast_index(index.index)
            self._inner = (index, inner)
        return self._inner[1]

    @property
    def is_exact(self) -> bool:
        return isinstance(self.inner, faiss.IndexFlat)

    @property
    def supports_remove(self) -> bool:
        return not isinstance(self.inner, faiss.IndexHNSW)

    @property
    def needs_training(self) -> bool:
        """True for an ivf-pq index still in its exact phase."""
        return self.spec.kind is IndexKind.IVF_PQ and self.is_exact

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def labels(self) -> np.ndarray:
        if isinstance(self.index, faiss.IndexIDMap2):
            return faiss.vector_to_array(self.index.id_map).astype(np.int64)
        invlists = self.index.invlists
        parts = [
            faiss.rev_swig_ptr(invlists.get_ids(i), invlists.list_size(i)).copy()
            for i in range(invlists.nlist)
            if invlists.list_size(i)
        ]
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)

    @classmethod
    def trained_from(cls, spec: CollectionSpec, sample: np.ndarray) -> VectorIndex:
        """An empty ivf-pq index trained on ``sample`` (FAISS subsamples to 256 per centroid)."""
        vi = cls(spec)
        vi.index = vi._empty(trained=True)
        vi.index.train(np.ascontiguousarray(sample, dtype=np.float32))
        return vi

    def add(self, labels: np.ndarray, vectors: np.ndarray) -> None:
        if len(labels):
            self.index.add_with_ids(
                np.ascontiguousarray(vectors, dtype=np.float32),
                np.ascontiguousarray(labels, dtype=np.int64),
            )

    def remove(self, labels: np.ndarray) -> int:
        if not len(labels):
            return 0
        sel = faiss.IDSelectorBatch(np.ascontiguousarray(labels, dtype=np.int64))
        return int(self.index.remove_ids(sel))

    def search(
        self, queries: np.ndarray, k: int, selector: Any | None, widen: float, effort: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """FAISS search of one query vector (1-D results) or of a matrix of them (a row of
        results each) at ``effort`` (efSearch for hnsw, nprobe for ivf; ignored by exact
        indexes), scaled by ``widen`` >= 1 for selective filters."""
        inner = self.inner
        params: Any
        if isinstance(inner, faiss.IndexHNSW):
            params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]
            params.efSearch = int(min(max(effort * widen, k), 1 << 14))
        elif isinstance(inner, faiss.IndexIVF):
            params = faiss.SearchParametersIVF()
            params.nprobe = int(max(min(effort * widen, self.spec.params["nlist"]), 1))
        else:
            params = faiss.SearchParameters()
        if selector is not None:
            params.sel = selector
        k = min(k, max(self.ntotal, 1))
        q = np.ascontiguousarray(queries, dtype=np.float32)
        distances, labels = self.index.search(q.reshape(-1, self.spec.dim), k, params=params)
        return (distances[0], labels[0]) if q.ndim == 1 else (distances, labels)

    def memory_bytes(self) -> int:
        return int(faiss.serialize_index(self.index).nbytes)


def _fingerprint(spec: CollectionSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "dim": spec.dim,
        "metric": spec.metric.value,
        "kind": spec.kind.value,
        "params": dict(spec.params),
        "created_at": spec.created_at,
    }


_fsync_lock = threading.Lock()


def write_snapshot(
    path: Path, vi: VectorIndex, seq: int, extra: dict[str, Any] | None = None
) -> int:
    """Atomically replaces ``path``; returns its size in bytes. ``extra``: JSON the collection
    keeps with the index (its calibration and holdout), returned by :func:`read_snapshot`."""
    payload = faiss.serialize_index(vi.index)
    header = json.dumps(
        {
            "seq": seq,
            "spec": _fingerprint(vi.spec),
            "sha256": hashlib.sha256(payload.data).hexdigest(),
            "length": int(payload.nbytes),
            "extra": extra or {},
        }
    ).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(_MAGIC + struct.pack("<I", len(header)) + header)
            f.write(payload.data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    with _fsync_lock:
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return path.stat().st_size


def read_snapshot(path: Path, spec: CollectionSpec) -> tuple[VectorIndex, int, dict[str, Any]]:
    """(index, seq covered, the ``extra`` it was written with); raises SnapshotError for
    anything unusable."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SnapshotError("no snapshot") from None
    except OSError as exc:
        raise SnapshotError(f"cannot read snapshot: {exc}") from exc
    if len(data) < 12 or not data.startswith(_MAGIC):
        raise SnapshotError("not a snapshot file (bad magic)")
    (hlen,) = struct.unpack_from("<I", data, len(_MAGIC))
    start = len(_MAGIC) + 4
    try:
        header = json.loads(data[start : start + hlen])
        seq = int(header["seq"])
        expected_len = int(header["length"])
        expected_sha = str(header["sha256"])
        fingerprint = header["spec"]
        extra = header.get("extra") or {}
        if not isinstance(extra, dict):
            raise TypeError("extra is not an object")
    except (ValueError, KeyError, TypeError) as exc:
        raise SnapshotError(f"bad snapshot header: {exc}") from None
    payload = memoryview(data)[start + hlen :]
    if len(payload) != expected_len or hashlib.sha256(payload).hexdigest() != expected_sha:
        raise SnapshotError("snapshot checksum mismatch (torn or corrupt file)")
    if fingerprint != _fingerprint(spec):
        raise SnapshotError("snapshot belongs to another collection spec")
    try:
        index = faiss.deserialize_index(np.frombuffer(payload, dtype=np.uint8))
    except RuntimeError as exc:
        raise SnapshotError(f"faiss cannot read the snapshot: {exc}") from None
    if not isinstance(index, faiss.IndexIDMap2 | faiss.IndexIVF) or index.d != spec.dim:
        raise SnapshotError("snapshot holds an unexpected index type")
    return VectorIndex(spec, index), seq, extra


def train_threshold(spec: CollectionSpec) -> int:
    return ivf_train_threshold(spec.params) if spec.kind is IndexKind.IVF_PQ else 0

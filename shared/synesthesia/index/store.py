"""SQLite, the durable source of truth for collections and items.

One writer connection (guarded by a lock: SQLite has one writer anyway) and one reader connection
per thread; WAL mode lets readers run while a write is in progress. Each write call is one
``BEGIN IMMEDIATE … COMMIT`` transaction, so a rejected or failed batch writes nothing, and a call
that returns has been committed.

``synchronous``: FULL (the default) fsyncs the WAL on every commit, so an acknowledged write
survives kill -9 *and* power loss. NORMAL survives kill -9 of the process (the WAL is in the OS
page cache) but may lose the last commits on power loss or an OS crash; it is faster. Choose with
the ``synchronous`` argument.

Every change (upsert, replace, delete) takes the collection's next ``seq``, kept in
``collections.last_seq`` so it never goes backwards even after tombstones are purged. A delete
leaves a tombstone row (deleted=1, vector and metadata cleared) with its own seq."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from synesthesia.errors import AlreadyExists, NotFound
from synesthesia.index.types import CollectionSpec, IndexKind, Metadata, Metric, StoredItem
from synesthesia.index.validate import ValidItem
from synesthesia.modality import Modality

_SCHEMA = """
CREATE TABLE IF NOT EXISTS collections (
    name TEXT PRIMARY KEY,
    dim INTEGER NOT NULL,
    metric TEXT NOT NULL,
    kind TEXT NOT NULL,
    params TEXT NOT NULL,
    model_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    last_seq INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS items (
    collection TEXT NOT NULL,
    id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    modality TEXT,
    metadata TEXT,
    vector BLOB,
    deleted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (collection, id)
);
CREATE UNIQUE INDEX IF NOT EXISTS items_by_seq ON items (collection, seq);
"""

_CHUNK = 500  # bound on SQL parameters per statement


def _dump_metadata(md: Metadata) -> str:
    return json.dumps(md, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _spec(row: sqlite3.Row | tuple) -> CollectionSpec:
    name, dim, metric, kind, params, model_id, created_at = row[:7]
    return CollectionSpec(
        name=name,
        dim=int(dim),
        metric=Metric(metric),
        kind=IndexKind(kind),
        params=json.loads(params),
        model_id=model_id,
        created_at=float(created_at),
    )


class Store:
    """All SQLite access. Methods are thread-safe; writes serialise on one connection."""

    def __init__(self, path: Path, synchronous: str = "FULL") -> None:
        if synchronous.upper() not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError(f"synchronous must be FULL, NORMAL or EXTRA, not {synchronous!r}")
        self.path = Path(path)
        self._sync = synchronous.upper()
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._writer = self._connect()
        self._writer.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=60)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._sync}")
        conn.execute("PRAGMA busy_timeout=60000")
        return conn

    @property
    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            conn.execute("PRAGMA query_only=1")
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._write_lock:
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def close(self) -> None:
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
        with self._write_lock:
            self._writer.close()

    # -- collections ---------------------------------------------------------------------------

    def create_collection(self, spec: CollectionSpec) -> CollectionSpec:
        created = CollectionSpec(**{**spec.__dict__, "created_at": time.time()})
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM collections WHERE name=?", (spec.name,)).fetchone():
                raise AlreadyExists(f"collection {spec.name!r} already exists")
            conn.execute(
                "INSERT INTO collections VALUES (?, ?, ?, ?, ?, ?, ?, 0)",
                (
                    created.name,
                    created.dim,
                    created.metric.value,
                    created.kind.value,
                    json.dumps(dict(created.params), sort_keys=True),
                    created.model_id,
                    created.created_at,
                ),
            )
        return created

    def specs(self) -> list[CollectionSpec]:
        rows = self._reader.execute("SELECT * FROM collections ORDER BY name").fetchall()
        return [_spec(r) for r in rows]

    def drop_collection(self, name: str) -> None:
        with self._write() as conn:
            if conn.execute("DELETE FROM collections WHERE name=?", (name,)).rowcount == 0:
                raise NotFound(f"collection {name!r} does not exist")
            conn.execute("DELETE FROM items WHERE collection=?", (name,))

    def last_seq(self, name: str) -> int:
        row = self._reader.execute(
            "SELECT last_seq FROM collections WHERE name=?", (name,)
        ).fetchone()
        if row is None:
            raise NotFound(f"collection {name!r} does not exist")
        return int(row[0])

    # -- writes -------------------------------------------------------------------------------

    def _take_seqs(self, conn: sqlite3.Connection, name: str, n: int) -> int:
        """Reserves n sequence numbers; returns the first."""
        row = conn.execute("SELECT last_seq FROM collections WHERE name=?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"collection {name!r} does not exist")
        conn.execute("UPDATE collections SET last_seq=? WHERE name=?", (int(row[0]) + n, name))
        return int(row[0]) + 1

    def upsert(self, name: str, items: Sequence[ValidItem]) -> list[int]:
        """Inserts or replaces; returns the new seq of each item. Committed when it returns."""
        with self._write() as conn:
            first = self._take_seqs(conn, name, len(items))
            seqs = list(range(first, first + len(items)))
            conn.executemany(
                "INSERT INTO items (collection, id, seq, modality, metadata, vector, deleted)"
                " VALUES (?, ?, ?, ?, ?, ?, 0) ON CONFLICT (collection, id) DO UPDATE SET"
                " seq=excluded.seq, modality=excluded.modality, metadata=excluded.metadata,"
                " vector=excluded.vector, deleted=0",
                [
                    (
                        name,
                        it.id,
                        s,
                        it.modality.value,
                        _dump_metadata(it.metadata),
                        it.vector.astype("<f4").tobytes(),
                    )
                    for it, s in zip(items, seqs, strict=True)
                ],
            )
        return seqs

    def delete(self, name: str, ids: Iterable[str]) -> list[str]:
        """Tombstones the live ones among ``ids``; returns those actually deleted."""
        ids = list(dict.fromkeys(ids))
        with self._write() as conn:
            live: list[str] = []
            for i in range(0, len(ids), _CHUNK):
                part = ids[i : i + _CHUNK]
                marks = ",".join("?" * len(part))
                live += [
                    r[0]
                    for r in conn.execute(
                        "SELECT id FROM items WHERE collection=? AND deleted=0"
                        f" AND id IN ({marks})",
                        (name, *part),
                    )
                ]
            first = self._take_seqs(conn, name, len(live))
            conn.executemany(
                "UPDATE items SET deleted=1, seq=?, vector=NULL, metadata=NULL"
                " WHERE collection=? AND id=?",
                [(first + j, name, item_id) for j, item_id in enumerate(live)],
            )
        return live

    def purge_tombstones(self, name: str) -> int:
        with self._write() as conn:
            return conn.execute(
                "DELETE FROM items WHERE collection=? AND deleted=1", (name,)
            ).rowcount

    # -- reads --------------------------------------------------------------------------------

    def live_rows(self, name: str) -> Iterator[tuple[str, int, Modality, Metadata]]:
        """(id, seq, modality, metadata) of every live item, for the in-memory mirror."""
        cur = self._reader.execute(
            "SELECT id, seq, modality, metadata FROM items WHERE collection=? AND deleted=0",
            (name,),
        )
        for item_id, seq, modality, metadata in cur:
            yield item_id, int(seq), Modality(modality), json.loads(metadata)

    def iter_vectors(
        self, name: str, dim: int, after_seq: int = 0, batch: int = 8192
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Live (seqs int64, vectors float32 [n, dim]) with seq > after_seq, in seq order."""
        cur = self._reader.execute(
            "SELECT seq, vector FROM items WHERE collection=? AND deleted=0 AND seq>? ORDER BY seq",
            (name, after_seq),
        )
        while rows := cur.fetchmany(batch):
            seqs = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4").reshape(-1, dim)
            yield seqs, vecs.astype(np.float32, copy=False)

    def vectors_for(
        self, name: str, dim: int, seqs: Sequence[int] | np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(seqs, vectors) of the live rows among ``seqs`` (order not preserved)."""
        out_s: list[int] = []
        out_v: list[bytes] = []
        seqs = [int(s) for s in seqs]
        for i in range(0, len(seqs), _CHUNK):
            part = seqs[i : i + _CHUNK]
            marks = ",".join("?" * len(part))
            for s, v in self._reader.execute(
                "SELECT seq, vector FROM items WHERE collection=? AND deleted=0"
                f" AND seq IN ({marks})",
                (name, *part),
            ):
                out_s.append(int(s))
                out_v.append(v)
        vecs = np.frombuffer(b"".join(out_v), dtype="<f4").reshape(-1, dim).astype(np.float32)
        return np.asarray(out_s, dtype=np.int64), vecs

    def get(self, name: str, dim: int, ids: Sequence[str]) -> dict[str, StoredItem]:
        found: dict[str, StoredItem] = {}
        ids = list(dict.fromkeys(ids))
        for i in range(0, len(ids), _CHUNK):
            part = ids[i : i + _CHUNK]
            marks = ",".join("?" * len(part))
            for item_id, seq, modality, metadata, vector in self._reader.execute(
                "SELECT id, seq, modality, metadata, vector FROM items"
                f" WHERE collection=? AND deleted=0 AND id IN ({marks})",
                (name, *part),
            ):
                found[item_id] = StoredItem(
                    id=item_id,
                    vector=np.frombuffer(vector, dtype="<f4").astype(np.float32).reshape(dim),
                    modality=Modality(modality),
                    metadata=json.loads(metadata),
                    seq=int(seq),
                )
        return found

    def counts(self, name: str) -> tuple[int, int, int]:
        """(live items, tombstones, payload bytes of ids + vectors + metadata)."""
        row = self._reader.execute(
            "SELECT COALESCE(SUM(deleted=0), 0), COALESCE(SUM(deleted=1), 0),"
            " COALESCE(SUM(length(CAST(id AS BLOB)) + IFNULL(length(vector), 0)"
            " + IFNULL(length(CAST(metadata AS BLOB)), 0)), 0)"
            " FROM items WHERE collection=?",
            (name,),
        ).fetchone()
        return int(row[0]), int(row[1]), int(row[2])

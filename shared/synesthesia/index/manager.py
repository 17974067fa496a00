"""The collections of one data directory: ``<dir>/index.sqlite3`` plus ``<dir>/snapshots/``.

Only one process may open a data directory at a time (an ``flock`` on ``<dir>/LOCK`` enforces
it): two processes would each keep their own FAISS index and diverge.

A background thread (``Tuning.calibrate_in_background``) measures the search effort of the
approximate collections whose calibration is due (see collection.py), one at a time."""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from synesthesia.errors import FailedPrecondition, InvalidInput, NotFound
from synesthesia.index.calibration import Cancelled
from synesthesia.index.collection import Collection, Tuning
from synesthesia.index.store import Store
from synesthesia.index.types import CollectionInfo, CollectionSpec, IndexKind, Metric, validate_name

log = logging.getLogger(__name__)


class IndexManager:
    """Opens every collection at construction (snapshot + replay, or rebuild), so a server can
    report SERVING as soon as this returns. Thread-safe."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        synchronous: str = "FULL",
        tuning: Tuning | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock_file = open(self.data_dir / "LOCK", "a+")  # noqa: SIM115 (held until close)
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise FailedPrecondition(
                f"data directory {self.data_dir} is in use by another process"
            ) from None
        self._tuning = tuning or Tuning()
        self._store = Store(self.data_dir / "index.sqlite3", synchronous=synchronous)
        self._collections: dict[str, Collection] = {}
        self._lock = threading.Lock()
        for spec in self._store.specs():
            try:
                validate_name(spec.name)
            except InvalidInput:
                log.warning("collection %r has a name no longer accepted; drop it", spec.name)
            coll = self._new(spec)
            coll.load()
            self._collections[spec.name] = coll
        self._stop = threading.Event()
        self._calibrator: threading.Thread | None = None
        if self._tuning.calibrate_in_background:
            self._calibrator = threading.Thread(
                target=self._calibrate_loop, name="index-calibration", daemon=True
            )
            self._calibrator.start()

    def _calibrate_loop(self) -> None:
        retry_after: dict[int, float] = {}  # a failed calibration is retried a minute later
        while not self._stop.wait(self._tuning.calibration_poll_s):
            with self._lock:
                colls = list(self._collections.values())
            for coll in colls:
                now = time.monotonic()
                if self._stop.is_set():
                    return
                if retry_after.get(id(coll), 0.0) > now or not coll.calibration_due(now):
                    continue
                try:
                    coll.calibrate(self._stop)
                except (NotFound, Cancelled):
                    pass  # dropped meanwhile, or closing
                except Exception:
                    log.exception("collection %s: calibration failed", coll.spec.name)
                    retry_after[id(coll)] = now + 60.0

    def _new(self, spec: CollectionSpec) -> Collection:
        return Collection(spec, self._store, self._snapshot_path(spec.name), self._tuning)

    def _snapshot_path(self, name: str) -> Path:
        return self.data_dir / "snapshots" / f"{name}.snap"

    def create_collection(
        self,
        name: str,
        dim: int,
        metric: str | Metric = Metric.IP,
        kind: str | IndexKind = IndexKind.FLAT,
        params: Mapping[str, Any] | None = None,
        model_id: str = "",
    ) -> CollectionSpec:
        """InvalidInput for a bad spec, AlreadyExists if the name is taken."""
        spec = CollectionSpec.create(name, dim, metric, kind, params, model_id)
        with self._lock:
            spec = self._store.create_collection(spec)
            # a stale snapshot of an earlier collection of this name fails its fingerprint check
            coll = self._new(spec)
            coll.load()
            self._collections[name] = coll
        return spec

    def collection(self, name: str) -> Collection:
        with self._lock:
            coll = self._collections.get(name) if isinstance(name, str) else None
        if coll is None:
            validate_name(name)
            raise NotFound(f"collection {name!r} does not exist")
        return coll  # a name stored before validation tightened stays reachable (to drop it)

    def list_collections(self) -> list[CollectionSpec]:
        with self._lock:
            return sorted((c.spec for c in self._collections.values()), key=lambda s: s.name)

    def describe(self, name: str) -> CollectionInfo:
        return self.collection(name).describe()

    def drop_collection(self, name: str) -> None:
        coll = self.collection(name)
        with self._lock, coll._lock.write():
            self._store.drop_collection(name)
            coll.dropped = True
            self._collections.pop(name, None)
            self._snapshot_path(name).unlink(missing_ok=True)

    def snapshot_all(self, only_dirty: bool = True) -> dict[str, int]:
        """Snapshots collections (with changes since their last snapshot); returns name -> seq."""
        with self._lock:
            colls = list(self._collections.values())
        return {c.spec.name: c.snapshot() for c in colls if not only_dirty or c.pending_changes > 0}

    def close(self, snapshot: bool = True) -> None:
        """Snapshots what changed (so the next start replays little), then releases the dir."""
        self._stop.set()
        if self._calibrator is not None:
            self._calibrator.join()
        try:
            if snapshot:
                self.snapshot_all()
        finally:
            self._store.close()
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()

    def __enter__(self) -> IndexManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""Durable vector collections: SQLite is the truth, FAISS a derived, snapshotted index.

Entry point: :class:`IndexManager` (one per data directory) -> :class:`Collection`."""

from synesthesia.index.collection import Collection, Tuning, UpsertResult
from synesthesia.index.filters import Filter, parse_filter
from synesthesia.index.manager import IndexManager
from synesthesia.index.types import (
    MAX_K,
    CollectionInfo,
    CollectionSpec,
    Hit,
    IndexKind,
    Metric,
    StoredItem,
    UpsertItem,
    ivf_train_threshold,
)

__all__ = [
    "MAX_K",
    "Collection",
    "CollectionInfo",
    "CollectionSpec",
    "Filter",
    "Hit",
    "IndexKind",
    "IndexManager",
    "Metric",
    "StoredItem",
    "Tuning",
    "UpsertItem",
    "UpsertResult",
    "ivf_train_threshold",
    "parse_filter",
]

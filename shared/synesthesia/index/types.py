"""Plain data types of the index: collection specs, items in, items and hits out.

These are what the gRPC layer converts protobufs to and from; nothing here knows about FAISS or
SQLite."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from synesthesia.errors import InvalidInput
from synesthesia.modality import Modality

MetadataValue = str | int | float | bool
Metadata = dict[str, MetadataValue]

#: Largest k a query may ask for.
MAX_K = 1000

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class Metric(StrEnum):
    """``ip`` is inner product (= cosine on the unit vectors our encoders emit); ``l2`` is squared
    Euclidean distance, reported as score = -distance so that higher is always better."""

    IP = "ip"
    L2 = "l2"

    @classmethod
    def parse(cls, value: str | Metric) -> Metric:
        name = str(value).strip().lower().removeprefix("metric_")
        if name == "cosine":
            return cls.IP
        try:
            return cls(name)
        except ValueError:
            raise InvalidInput(f"unknown metric {value!r}; expected ip or l2") from None


class IndexKind(StrEnum):
    FLAT = "flat"
    HNSW = "hnsw"
    IVF_PQ = "ivf-pq"

    @classmethod
    def parse(cls, value: str | IndexKind) -> IndexKind:
        name = str(value).strip().lower().removeprefix("index_kind_").replace("_", "-")
        try:
            return cls(name)
        except ValueError:
            raise InvalidInput(
                f"unknown index kind {value!r}; expected flat, hnsw or ivf-pq"
            ) from None


#: Default of the ``recall_target`` parameter, in thousandths (950 = recall@10 0.95).
DEFAULT_RECALL_TARGET = 950

# Parameter defaults per kind; any other key is rejected.
_DEFAULTS: dict[IndexKind, dict[str, int]] = {
    IndexKind.FLAT: {},
    # M=32/efConstruction=80 builds 1M x 384 in under 4 minutes on two cores (bench_index.py).
    # ef_search 0: calibrated by measurement to reach recall_target (see index/calibration.py);
    # a positive value is used as given.
    IndexKind.HNSW: {
        "M": 32,
        "ef_construction": 80,
        "ef_search": 0,
        "recall_target": DEFAULT_RECALL_TARGET,
    },
    # train_min = 0 means "use the documented default", see ivf_train_threshold().
    # rerank R: fetch k*R candidates from the compressed index, re-score them exactly (R=1: off).
    # nprobe 0: calibrated like hnsw's ef_search.
    IndexKind.IVF_PQ: {
        "nlist": 1024,
        "m": 48,
        "nbits": 8,
        "nprobe": 0,
        "train_min": 0,
        "rerank": 8,
        "recall_target": DEFAULT_RECALL_TARGET,
    },
}

# The parameter that sets an approximate kind's search effort (0 = calibrated), and the effort
# used while such a collection has not been calibrated yet.
EFFORT_PARAM: dict[IndexKind, str] = {IndexKind.HNSW: "ef_search", IndexKind.IVF_PQ: "nprobe"}
UNCALIBRATED_EFFORT: dict[IndexKind, int] = {IndexKind.HNSW: 128, IndexKind.IVF_PQ: 32}

_RANGES: dict[str, tuple[int, int]] = {
    "M": (4, 128),
    "ef_construction": (8, 4096),
    "ef_search": (8, 1 << 16),  # or 0
    "nlist": (1, 1 << 18),
    "m": (1, 512),
    "nbits": (4, 12),
    "nprobe": (1, 1 << 18),  # or 0
    "train_min": (0, 1 << 30),
    "rerank": (1, 64),
    "recall_target": (1, 1000),
}
_ZERO_MEANS_CALIBRATED = frozenset(EFFORT_PARAM.values())


def normalize_params(kind: IndexKind, dim: int, params: Mapping[str, Any] | None) -> dict[str, int]:
    """Fill defaults and validate index parameters; unknown keys and bad values -> InvalidInput."""
    out = dict(_DEFAULTS[kind])
    for key, value in (params or {}).items():
        if key not in out:
            allowed = ", ".join(out) or "none"
            raise InvalidInput(f"index kind {kind} has no parameter {key!r} (allowed: {allowed})")
        hint = " in thousandths (950 = recall 0.95)" if key == "recall_target" else ""
        if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
            raise InvalidInput(f"index parameter {key!r} must be an integer{hint}, got {value!r}")
        lo, hi = _RANGES[key]
        if not lo <= int(value) <= hi and not (key in _ZERO_MEANS_CALIBRATED and value == 0):
            zero = " (or 0: calibrated)" if key in _ZERO_MEANS_CALIBRATED else ""
            raise InvalidInput(
                f"index parameter {key!r}={value} is outside [{lo}, {hi}]{zero}{hint}"
            )
        out[key] = int(value)
    if kind is IndexKind.IVF_PQ and dim % out["m"] != 0:
        raise InvalidInput(f"ivf-pq parameter m={out['m']} must divide the dimension {dim}")
    return out


def ivf_train_threshold(params: Mapping[str, int]) -> int:
    """How many live vectors an ivf-pq collection needs before it trains (exact search until then).

    FAISS's k-means wants about 39 points per centroid: ``nlist`` coarse centroids and ``2**nbits``
    centroids per PQ sub-quantizer, so the default is ``39 * max(nlist, 2**nbits)`` (39,936 for the
    defaults). ``train_min`` overrides it upwards or downwards (tests use small values)."""
    if params.get("train_min"):
        return max(int(params["train_min"]), int(params["nlist"]), 1 << int(params["nbits"]))
    return 39 * max(int(params["nlist"]), 1 << int(params["nbits"]))


def validate_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise InvalidInput(
            f"invalid collection name {name!r}: 1-64 characters of letters, digits, '_', '.', '-',"
            " starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class CollectionSpec:
    """What a collection is. ``model_id`` "" means it accepts vectors from any model."""

    name: str
    dim: int
    metric: Metric = Metric.IP
    kind: IndexKind = IndexKind.FLAT
    params: Mapping[str, int] = field(default_factory=dict)
    model_id: str = ""
    created_at: float = 0.0

    @classmethod
    def create(
        cls,
        name: str,
        dim: int,
        metric: str | Metric = Metric.IP,
        kind: str | IndexKind = IndexKind.FLAT,
        params: Mapping[str, Any] | None = None,
        model_id: str = "",
    ) -> CollectionSpec:
        """Validates everything and fills parameter defaults."""
        validate_name(name)
        if isinstance(dim, bool) or not isinstance(dim, int) or not 1 <= dim <= 65536:
            raise InvalidInput(f"dimension must be an integer in [1, 65536], got {dim!r}")
        k = IndexKind.parse(kind)
        return cls(
            name=name,
            dim=dim,
            metric=Metric.parse(metric),
            kind=k,
            params=normalize_params(k, dim, params),
            model_id=str(model_id or ""),
        )


@dataclass(frozen=True)
class UpsertItem:
    """One item to write. ``model_id`` is the model that produced the vector; when given it must
    equal the collection's (FailedPrecondition otherwise); None skips the check."""

    id: str
    vector: np.ndarray | Sequence[float]
    modality: str | Modality
    metadata: Mapping[str, MetadataValue] = field(default_factory=dict)
    model_id: str | None = None


@dataclass(frozen=True)
class StoredItem:
    id: str
    vector: np.ndarray  # float32, exactly as stored
    modality: Modality
    metadata: Metadata
    seq: int


@dataclass(frozen=True, slots=True)  # slots: a third cheaper to make, ten a query
class Hit:
    """A query result. ``score``: inner product for ip, minus squared L2 distance for l2."""

    id: str
    score: float
    modality: Modality
    metadata: Metadata


@dataclass(frozen=True)
class CollectionInfo:
    """Describe(): ``bytes_on_disk`` is the collection's payload in SQLite (ids, vectors, metadata)
    plus its snapshot file; SQLite page overhead shared by all collections is not attributed."""

    spec: CollectionSpec
    count: int
    tombstones: int
    last_seq: int
    snapshot_seq: int
    bytes_on_disk: int
    index_ntotal: int
    dead_in_index: int
    trained: bool
    # The effort (efSearch / nprobe) a query without its own recall target uses (0: exact index),
    # the recall@10 last measured at it (1.0 exact, 0.0 not measured yet), and the live count
    # when it was measured (0: never).
    search_effort: int = 0
    measured_recall: float = 0.0
    calibrated_count: int = 0

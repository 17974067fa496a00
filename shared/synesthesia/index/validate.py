"""Input validation for writes and queries. Every problem raises InvalidInput (or
FailedPrecondition for a model mismatch) naming the item, before anything is written."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from synesthesia.errors import FailedPrecondition, InvalidInput, item_error
from synesthesia.index.types import MAX_K, CollectionSpec, Metadata, UpsertItem
from synesthesia.modality import Modality

MAX_ID_BYTES = 1024
MAX_METADATA_KEYS = 64
MAX_METADATA_KEY_CHARS = 256
MAX_METADATA_STRING_CHARS = 8192


@dataclass(frozen=True)
class ValidItem:
    id: str
    vector: np.ndarray  # float32, contiguous, shape (dim,)
    modality: Modality
    metadata: Metadata


def check_id(item_id: Any, index: int = 0) -> str:
    if not isinstance(item_id, str) or not item_id:
        raise item_error(index, "", f"id must be a non-empty string, got {item_id!r}")
    if len(item_id.encode("utf-8", "surrogatepass")) > MAX_ID_BYTES:
        raise item_error(index, item_id[:40] + "…", f"id is longer than {MAX_ID_BYTES} bytes")
    return item_id


def check_ids(ids: Sequence[str]) -> list[str]:
    if isinstance(ids, str):
        raise InvalidInput("ids must be a list of strings, not one string")
    return [check_id(item_id, i) for i, item_id in enumerate(ids)]


def as_vector(value: Any, dim: int, index: int, item_id: str) -> np.ndarray:
    """float32 copy of ``value``; the finiteness check runs after the cast, so a float64 1e39
    (inf in float32) is rejected too."""
    try:
        vec = np.array(value, dtype=np.float32, copy=True)
    except (TypeError, ValueError) as exc:
        raise item_error(index, item_id, f"vector is not numeric: {exc}") from None
    if vec.ndim != 1:
        raise item_error(index, item_id, f"vector must be 1-dimensional, got shape {vec.shape}")
    if vec.shape[0] != dim:
        raise item_error(index, item_id, f"vector has dimension {vec.shape[0]}, expected {dim}")
    if not np.isfinite(vec).all():
        raise item_error(index, item_id, "vector contains NaN or infinite values")
    return np.ascontiguousarray(vec)


def as_matrix(values: Any, dim: int, item_id: str) -> np.ndarray:
    """float32 (n, dim) copy of ``values`` (n vectors, n may be 0), checked like ``as_vector``
    but at once; a bad row is named as ``as_vector`` names it (item i, id ``item_id``)."""
    try:
        mat = np.array(values, dtype=np.float32, copy=True)
    except (TypeError, ValueError):
        mat = None
    if mat is not None and mat.size == 0 and len(values) == 0:
        return np.zeros((0, dim), np.float32)
    if mat is None or mat.ndim != 2 or mat.shape[1] != dim or not np.isfinite(mat).all():
        for i, value in enumerate(values):
            as_vector(value, dim, i, item_id)  # raises naming the first bad row
        raise InvalidInput(f"expected vectors of shape (n, {dim}), got {np.shape(values)}")
    return np.ascontiguousarray(mat)


def check_metadata(value: Mapping[str, Any] | None, index: int, item_id: str) -> Metadata:
    """Flat mapping of str -> str | int | float | bool; floats must be finite."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise item_error(index, item_id, f"metadata must be a mapping, got {type(value).__name__}")
    if len(value) > MAX_METADATA_KEYS:
        raise item_error(index, item_id, f"metadata has more than {MAX_METADATA_KEYS} keys")
    out: Metadata = {}
    for key, v in value.items():
        if not isinstance(key, str) or not key or len(key) > MAX_METADATA_KEY_CHARS:
            raise item_error(index, item_id, f"metadata key {key!r} must be a non-empty string")
        if isinstance(v, bool | str):
            if isinstance(v, str) and len(v) > MAX_METADATA_STRING_CHARS:
                raise item_error(index, item_id, f"metadata value of {key!r} is too long")
            out[key] = v
        elif isinstance(v, int | np.integer):
            if not -(2**63) <= int(v) < 2**63:
                raise item_error(index, item_id, f"metadata value of {key!r} exceeds int64")
            out[key] = int(v)
        elif isinstance(v, float | np.floating):
            if not math.isfinite(float(v)):
                raise item_error(index, item_id, f"metadata value of {key!r} is not finite")
            out[key] = float(v)
        else:
            raise item_error(
                index,
                item_id,
                f"metadata value of {key!r} must be a string, number or bool,"
                f" got {type(v).__name__}",
            )
    return out


def check_items(spec: CollectionSpec, items: Sequence[UpsertItem]) -> list[ValidItem]:
    """Validates a whole batch; duplicates inside the batch are an error (which one would win?)."""
    if isinstance(items, UpsertItem):
        raise InvalidInput("items must be a list of UpsertItem")
    seen: dict[str, int] = {}
    out: list[ValidItem] = []
    for i, item in enumerate(items):
        if not isinstance(item, UpsertItem):
            raise item_error(i, "", f"expected an UpsertItem, got {type(item).__name__}")
        item_id = check_id(item.id, i)
        if item_id in seen:
            raise item_error(i, item_id, f"duplicate id in the batch (also item {seen[item_id]})")
        seen[item_id] = i
        if item.model_id is not None and spec.model_id and item.model_id != spec.model_id:
            raise FailedPrecondition(
                f"item {i} (id {item_id!r}): vector comes from model {item.model_id!r} but"
                f" collection {spec.name!r} holds vectors of model {spec.model_id!r}"
            )
        try:
            modality = Modality.parse(item.modality)
        except InvalidInput as exc:
            raise item_error(i, item_id, str(exc)) from None
        vector = as_vector(item.vector, spec.dim, i, item_id)
        metadata = check_metadata(item.metadata, i, item_id)
        out.append(ValidItem(item_id, vector, modality, metadata))
    return out


def check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        raise InvalidInput(f"k must be an integer, got {k!r}")
    if not 1 <= int(k) <= MAX_K:
        raise InvalidInput(f"k must be between 1 and {MAX_K}, got {k}")
    return int(k)


def check_recall(value: Any) -> float | None:
    """A query's own recall@10 target: None (or 0) means the collection's ``recall_target``;
    otherwise a number in (0, 1]."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise InvalidInput(f"recall_target must be a number, got {value!r}")
    target = float(value)
    if target == 0:
        return None
    if not (math.isfinite(target) and 0 < target <= 1):
        raise InvalidInput(
            f"recall_target must be in (0, 1] (0 or unset: the collection's), got {value!r}"
        )
    return target

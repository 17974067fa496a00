"""The query filter language: a JSON-able dict, compiled once into a predicate.

    {"modality": ["image", "audio"],            # or a single "image"
     "ids": ["a", "b"],                         # optional: only these ids
     "metadata": {"kind": "dog",                # bare value = eq
                  "year": {"gte": 2000, "lt": 2010},
                  "tag": {"in": ["a", "b"]},
                  "source": {"ne": "web"}}}

All conditions are ANDed. Operators: eq, ne, in, nin, gt, gte, lt, lte. Surprising on purpose:
- a key missing from an item's metadata fails every condition on it, ``ne`` and ``nin`` included;
- types never coerce: ``True`` does not equal ``1``, ``"2000"`` does not equal ``2000``; range
  operators compare numbers with numbers and strings with strings (lexicographically), and an
  item whose value has the other type simply does not match.
An empty filter ({} or None) matches everything."""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from synesthesia.errors import InvalidInput
from synesthesia.index.types import Metadata, MetadataValue
from synesthesia.modality import Modality

_RANGE_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}
_OPS = {"eq", "ne", "in", "nin", *_RANGE_OPS}
_TOP_KEYS = {"modality", "metadata", "ids"}

Condition = Callable[[Metadata], bool]


def value_kind(value: Any) -> str:
    """Type family used for comparisons: bool is not a number here."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return "string"


def _scalar(value: Any, where: str) -> MetadataValue:
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidInput(f"{where}: {value!r} is not a finite number")
        return value
    raise InvalidInput(f"{where}: expected a string, number or bool, got {value!r}")


def _same(a: Any, b: MetadataValue) -> bool:
    return value_kind(a) == value_kind(b) and a == b


def _condition(key: str, op: str, arg: Any) -> Condition:
    where = f"filter.metadata.{key}.{op}"
    missing = object()
    if op in ("eq", "ne"):
        val = _scalar(arg, where)
        want = op == "eq"
        return lambda md: (v := md.get(key, missing)) is not missing and _same(v, val) == want
    if op in ("in", "nin"):
        if not isinstance(arg, list | tuple) or not arg:
            raise InvalidInput(f"{where}: expected a non-empty list, got {arg!r}")
        vals = [_scalar(a, f"{where}[{i}]") for i, a in enumerate(arg)]
        want = op == "in"
        return lambda md: (
            (v := md.get(key, missing)) is not missing and (any(_same(v, x) for x in vals) == want)
        )
    if isinstance(arg, bool) or not isinstance(arg, int | float | str):
        raise InvalidInput(f"{where}: expected a number or a string, got {arg!r}")
    val = _scalar(arg, where)
    fam = value_kind(val)
    cmp = _RANGE_OPS[op]
    return lambda md: (
        (v := md.get(key, missing)) is not missing and value_kind(v) == fam and cmp(v, val)
    )


@dataclass(frozen=True)
class Filter:
    """A compiled filter. ``modalities`` / ``ids`` are None when unrestricted."""

    modalities: frozenset[Modality] | None
    ids: frozenset[str] | None
    conditions: tuple[Condition, ...]
    # eq / in conditions again, as (key, allowed values), for the postings to narrow with
    equalities: tuple[tuple[str, tuple[MetadataValue, ...]], ...] = ()

    @property
    def is_empty(self) -> bool:
        return self.modalities is None and self.ids is None and not self.conditions

    def matches(self, item_id: str, modality: Modality, metadata: Metadata) -> bool:
        if self.modalities is not None and modality not in self.modalities:
            return False
        if self.ids is not None and item_id not in self.ids:
            return False
        return all(cond(metadata) for cond in self.conditions)


MATCH_ALL = Filter(None, None, ())


def parse_filter(spec: Mapping[str, Any] | str | None) -> Filter:
    """Compiles a filter dict (or its JSON text); malformed filters raise InvalidInput saying
    where, e.g. ``filter.metadata.year: unknown operator 'after'``."""
    if spec is None or spec == "":
        return MATCH_ALL
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"filter is not valid JSON: {exc}") from None
    if not isinstance(spec, Mapping):
        raise InvalidInput(f"filter must be an object, got {type(spec).__name__}")
    unknown = set(spec) - _TOP_KEYS
    if unknown:
        raise InvalidInput(
            f"filter has unknown keys {sorted(map(str, unknown))}; allowed: {sorted(_TOP_KEYS)}"
        )
    modalities = None
    if spec.get("modality") is not None:
        raw = spec["modality"]
        raw = [raw] if isinstance(raw, str | Modality) else raw
        if not isinstance(raw, list | tuple) or not raw:
            raise InvalidInput("filter.modality: expected a modality or a non-empty list of them")
        try:
            modalities = frozenset(Modality.parse(m) for m in raw)
        except InvalidInput as exc:
            raise InvalidInput(f"filter.modality: {exc}") from None
    ids = None
    if spec.get("ids") is not None:
        raw_ids = spec["ids"]
        if not isinstance(raw_ids, list | tuple) or not all(
            isinstance(i, str) and i for i in raw_ids
        ):
            raise InvalidInput("filter.ids: expected a list of non-empty strings")
        ids = frozenset(raw_ids)
    conditions: list[Condition] = []
    equalities: list[tuple[str, tuple[MetadataValue, ...]]] = []
    md = spec.get("metadata")
    if md is not None:
        if not isinstance(md, Mapping):
            raise InvalidInput("filter.metadata: expected an object of key -> value or operators")
        for key, cond in md.items():
            if not isinstance(key, str) or not key:
                raise InvalidInput(f"filter.metadata: key {key!r} must be a non-empty string")
            if isinstance(cond, Mapping):
                if not cond:
                    raise InvalidInput(f"filter.metadata.{key}: empty operator object")
                for op, arg in cond.items():
                    if op not in _OPS:
                        raise InvalidInput(
                            f"filter.metadata.{key}: unknown operator {op!r};"
                            f" expected one of {sorted(_OPS)}"
                        )
                    conditions.append(_condition(key, op, arg))
                    if op == "eq":
                        equalities.append((key, (arg,)))
                    elif op == "in":
                        equalities.append((key, tuple(arg)))
            else:
                conditions.append(_condition(key, "eq", cond))
                equalities.append((key, (cond,)))
    return Filter(modalities, ids, tuple(conditions), tuple(equalities))

"""Inverted lists over a collection's in-memory metadata mirror, so that a selective filter
(``{"metadata": {"label": "dog"}}``, ``ids``, ``in`` lists, a rare modality) starts from the few
labels that can match instead of testing every item in Python. The full filter predicate still
decides; postings only narrow the candidates."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

from synesthesia.index.filters import Filter, value_kind
from synesthesia.index.types import Metadata, MetadataValue
from synesthesia.modality import Modality

Term = tuple[str, str, MetadataValue]  # (key, type family, value): True and 1 stay apart


class Postings:
    def __init__(self) -> None:
        self._by_modality: defaultdict[Modality, set[int]] = defaultdict(set)
        self._by_term: defaultdict[Term, set[int]] = defaultdict(set)

    def clear(self) -> None:
        self._by_modality.clear()
        self._by_term.clear()

    def add(self, label: int, modality: Modality, metadata: Metadata) -> None:
        self._by_modality[modality].add(label)
        for key, value in metadata.items():
            self._by_term[(key, value_kind(value), value)].add(label)

    def remove(self, label: int, modality: Modality, metadata: Metadata) -> None:
        self._discard(self._by_modality, modality, label)
        for key, value in metadata.items():
            self._discard(self._by_term, (key, value_kind(value), value), label)

    @staticmethod
    def _discard(index: defaultdict, key: object, label: int) -> None:  # type: ignore[type-arg]
        members = index.get(key)
        if members is not None:
            members.discard(label)
            if not members:
                del index[key]

    def candidates(self, f: Filter, label_of: Mapping[str, int]) -> Iterable[int] | None:
        """Labels that may match ``f`` (a superset), or None when no posting narrows it."""
        sets: list[set[int]] = []
        if f.ids is not None:
            sets.append({label_of[i] for i in f.ids if i in label_of})
        for key, values in f.equalities:
            union: set[int] = set()
            for v in values:
                union |= self._by_term.get((key, value_kind(v), v), set())
            sets.append(union)
        if not sets and f.modalities is not None:
            sets.append(set().union(*(self._by_modality.get(m, set()) for m in f.modalities)))
        if not sets:
            return None
        sets.sort(key=len)
        out = set(sets[0])
        for other in sets[1:]:
            out &= other
        return out

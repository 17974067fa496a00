"""The demo's cross-modal queries: a bark -> pictures, a picture -> sounds, words -> pictures and
words -> sounds. Every table, score, rank and count printed here is the search service's
answer."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synesthesia.apps.indexing import EXTENSIONS
from synesthesia.apps.search_cli import format_hits
from synesthesia.client import Hit, SearchClient
from synesthesia.modality import Modality

DEFAULT_SOUND = "dog.ogg"  # Tux Paint's dog bark (animals/mammals/dogs), held out from training
DEFAULT_PICTURE = "cow.png"
DEFAULT_WORDS = "a barking dog"
ALL_OF_THEM = 1000  # the service's largest k: ranks are counted over this many results


@dataclass
class Query:
    title: str
    collection: str
    by: dict[str, Any]  # what to query by: {"text": …}, {"image": …} or {"audio": …}
    among: tuple[Modality, ...]
    noun: str  # what the results are ("pictures", "sounds", …)
    # (label, predicate) of the item whose rank is reported, e.g. ("the first dog picture", …)
    watch: tuple[str, Callable[[dict[str, Any]], bool]] | None = None


@dataclass
class Answer:
    query: Query
    hits: list[Hit]
    watched_rank: int | None  # 1-based rank of the first watched item, None when absent


def find_file(root: Path, name: str, modality: Modality) -> Path | None:
    """``root/**/name`` if present, else the first file of ``modality`` under ``root``."""
    exact = sorted(p for p in root.rglob(name) if p.is_file())
    if exact:
        return exact[0]
    return next(
        (p for p in sorted(root.rglob("*")) if EXTENSIONS.get(p.suffix.lower()) is modality), None
    )


def mentions(word: str) -> Callable[[dict[str, Any]], bool]:
    pattern = re.compile(rf"\b{re.escape(word)}", re.IGNORECASE)
    return lambda meta: bool(pattern.search(f"{meta.get('caption', '')} {meta.get('name', '')}"))


def build_queries(
    collection: str,
    gallery: Path,
    sound: Path | None = None,
    picture: Path | None = None,
    words: str = DEFAULT_WORDS,
    watch_word: str = "dog",
) -> list[Query]:
    queries = []
    sound = sound or find_file(gallery, DEFAULT_SOUND, Modality.AUDIO)
    if sound is not None:
        title = f"a sound -> pictures: {_show(sound, gallery)}"
        watch = (f"the first {watch_word} picture", mentions(watch_word))
        by = {"audio": sound.read_bytes()}
        queries.append(Query(title, collection, by, (Modality.IMAGE,), "pictures", watch))
    picture = picture or find_file(gallery, DEFAULT_PICTURE, Modality.IMAGE)
    if picture is not None:
        title = f"a picture -> sounds: {_show(picture, gallery)}"
        own = picture.with_suffix(".ogg").name
        watch = (f"its own sound ({own})", lambda m: Path(m.get("path", "")).name == own)
        by = {"image": picture.read_bytes()}
        queries.append(Query(title, collection, by, (Modality.AUDIO,), "sounds", watch))
    if words:
        # one table per modality: scores are comparable within a modality, not across (sounds
        # sit nearer words than pictures do; docs/model-card.md)
        for modality, noun in ((Modality.IMAGE, "pictures"), (Modality.AUDIO, "sounds")):
            watch = (f"the first {watch_word} {noun[:-1]}", mentions(watch_word))
            title = f"words -> {noun}: {words!r}"
            queries.append(Query(title, collection, {"text": words}, (modality,), noun, watch))
    return queries


def _show(path: Path, gallery: Path) -> str:
    return str(path.relative_to(gallery)) if path.is_relative_to(gallery) else str(path)


def run_queries(client: SearchClient, queries: list[Query]) -> list[Answer]:
    answers = []
    for q in queries:
        hits = client.query(q.collection, k=ALL_OF_THEM, modalities=q.among, timeout=120, **q.by)
        rank = None
        if q.watch is not None:
            rank = next((i for i, h in enumerate(hits, 1) if q.watch[1](h.metadata)), None)
        answers.append(Answer(q, hits, rank))
    return answers


def report(answer: Answer, k: int) -> str:
    q, hits = answer.query, answer.hits
    lines = [f"\n{q.title}", format_hits(hits[:k])]
    if q.watch is not None:
        where = f"{len(hits)} {q.noun}"
        if len(hits) >= ALL_OF_THEM:
            where = f"the best {ALL_OF_THEM} {q.noun}"
        if answer.watched_rank is None:
            lines.append(f"   {q.watch[0]}: not among the {where}")
        else:
            hit = hits[answer.watched_rank - 1]
            path = hit.metadata.get("path", hit.id)
            lines.append(
                f"   {q.watch[0]}: rank {answer.watched_rank} of {where} "
                f"({path}, score {hit.score:.3f})"
            )
    return "\n".join(lines)

"""What the page asks the search service, as plain data: one query in, JSON-ready hits out."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from synesthesia.apps.indexing import EXTENSIONS
from synesthesia.client import Hit, LabelScore, SearchClient
from synesthesia.errors import SynesthesiaError
from synesthesia.modality import Modality

AMONG = {
    "all": (),
    "images": (Modality.IMAGE,),
    "sounds": (Modality.AUDIO,),
    "texts": (Modality.TEXT,),
}
# gRPC status -> HTTP status for the page; a user's mistake is 400 with the service's details.
HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "NOT_FOUND": 404,
    "FAILED_PRECONDITION": 503,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
    "UNAUTHENTICATED": 502,
    "PERMISSION_DENIED": 502,
    "RESOURCE_EXHAUSTED": 503,
}
# What the page says instead of the service's codes (the details follow).
WORDING = {
    "NOT_FOUND": "Not found",
    "FAILED_PRECONDITION": "The search service is not ready",
    "UNAVAILABLE": "The search service cannot be reached (or cannot reach an encoder)",
    "DEADLINE_EXCEEDED": "The search service took too long to answer",
    "UNAUTHENTICATED": "The page's credentials for the search service were refused",
    "PERMISSION_DENIED": "The page's credentials for the search service do not allow this",
    "RESOURCE_EXHAUSTED": "The search service is busy; try again in a moment",
}
AS_WHAT = {"image": "a picture", "audio": "a sound", "text": "words"}
_ITEM_PREFIX = re.compile(r"^item \d+( \(id '[^']*'\))?: ")
MAX_RESULTS = 500  # k + offset ("load more")


class QueryError(Exception):
    """A query the page should explain: ``status`` is the HTTP status, ``message`` the text."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class Searcher:
    """A gRPC client of the search service, shared by the page's request threads."""

    address: str
    collection: str
    gallery: Path | None
    timeout: float = 60.0
    client_options: dict[str, Any] = field(default_factory=dict)  # tls, token, … of SearchClient

    def __post_init__(self) -> None:
        # No keepalive pings: an idle page would otherwise be told "too_many_pings" by the server.
        # A page answers at once when the service is down (no wait-for-ready) unless told to.
        options = {"wait_for_ready": False, **self.client_options}
        self._client = SearchClient(self.address, timeout=self.timeout, keepalive=False, **options)

    def close(self) -> None:
        self._client.close()

    @contextmanager
    def _explained(self, kind: str = "") -> Iterator[None]:
        """The service's errors in the page's words: 'This file could not be read as a sound:
        …', not 'INVALID_ARGUMENT: item 0 (id 'query'): …'."""
        try:
            yield
        except SynesthesiaError as err:
            status = HTTP_STATUS.get(err.code, 502)
            detail = _ITEM_PREFIX.sub("", err.message or "")
            if err.code == "INVALID_ARGUMENT" and kind in ("image", "audio"):
                message = f"This file could not be read as {AS_WHAT[kind]}: {detail}"
            elif err.code == "INVALID_ARGUMENT":
                message = detail[:1].upper() + detail[1:]
            else:
                message = f"{WORDING.get(err.code, 'The search failed')}: {detail}"
            raise QueryError(status, message) from None

    def info(self) -> dict[str, Any]:
        with self._explained():
            reply = self._client.describe_collection(self.collection)
        return {
            "collection": self.collection,
            "count": reply.count,
            "model_id": reply.config.model_id,
            "dim": reply.config.dim,
        }

    def _given(self, kind: str, body: bytes, kinds: tuple[str, ...]) -> dict[str, Any]:
        """The one query field (text, image, audio or id) from the request body."""
        if kind not in kinds:
            raise QueryError(400, f"unknown input {kind!r}: use {', '.join(kinds)}")
        if kind in ("text", "id"):
            words = body.decode("utf-8", errors="replace").strip()
            if not words:
                raise QueryError(400, "type some words to search with")
            return {kind: words}
        if not body:
            raise QueryError(400, "the file is empty")
        return {kind: body}

    def query(
        self, kind: str, body: bytes, among: str, k: int, offset: int = 0
    ) -> list[dict[str, Any]]:
        """Results ``offset`` to ``offset + k`` ("load more" asks for the next ones); ``kind``
        "id" is "more like this" (the body is a stored item's id)."""
        if among not in AMONG:
            raise QueryError(400, f"unknown choice {among!r}: use one of {', '.join(AMONG)}")
        if not 1 <= k <= 100:
            raise QueryError(400, "k must be between 1 and 100")
        if not 0 <= offset <= MAX_RESULTS - k:
            raise QueryError(400, f"no more than {MAX_RESULTS} results in all")
        given = self._given(kind, body, ("text", "image", "audio", "id"))
        with self._explained(kind):
            hits = self._client.query(
                self.collection, k=offset + k, modalities=AMONG[among], **given
            )
        return [self._hit(h) for h in hits[offset:]]

    def classify(self, kind: str, body: bytes, labels: str, template: str) -> list[dict[str, Any]]:
        """Labels (comma-separated) ranked for a picture, a sound or words."""
        names = [x.strip() for x in labels.split(",") if x.strip()]
        if not names:
            raise QueryError(400, "give some labels, separated by commas")
        if len(names) > 100:
            raise QueryError(400, "no more than 100 labels")
        given = self._given(kind, body, ("text", "image", "audio"))
        with self._explained(kind):
            ranked: list[LabelScore] = self._client.classify(names, template=template, **given)
        return [
            {"label": x.label, "score": round(x.score, 4), "probability": round(x.probability, 4)}
            for x in ranked
        ]

    def _hit(self, hit: Hit) -> dict[str, Any]:
        meta = hit.metadata
        path = str(meta.get("path", ""))
        url = ""
        if path and self.gallery is not None and media_file(self.gallery, path) is not None:
            url = "/media/" + quote(path)
        return {
            "id": hit.id,
            "score": round(float(hit.score), 4),
            "modality": hit.modality.value,
            "caption": str(meta.get("caption", "")),
            "path": path,
            "url": url,
        }


def media_file(root: Path, rel: str) -> Path | None:
    """``root/rel`` when it is a picture, sound or text file inside ``root``; else None (so no
    path, however spelled — ``..``, absolute, symlinked out — reaches a file outside it)."""
    if not rel or "\x00" in rel or rel.startswith(("/", "\\")):
        return None
    base = root.resolve()
    try:
        path = (base / rel).resolve()
    except (OSError, RuntimeError):
        return None
    if not path.is_relative_to(base) or path.suffix.lower() not in EXTENSIONS:
        return None
    return path if path.is_file() else None

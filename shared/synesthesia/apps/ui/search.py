"""What the page asks the search service, as plain data: one query in, JSON-ready hits out."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from synesthesia.apps.indexing import EXTENSIONS
from synesthesia.client import Hit, SearchClient
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
}


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

    def __post_init__(self) -> None:
        # No keepalive pings: an idle page would otherwise be told "too_many_pings" by the server.
        self._client = SearchClient(self.address, timeout=self.timeout, keepalive=False)

    def close(self) -> None:
        self._client.close()

    @contextmanager
    def _explained(self) -> Iterator[None]:
        try:
            yield
        except SynesthesiaError as err:
            status = HTTP_STATUS.get(err.code, 502)
            raise QueryError(status, f"{err.code}: {err.message}") from None

    def info(self) -> dict[str, Any]:
        with self._explained():
            reply = self._client.describe_collection(self.collection)
        return {
            "collection": self.collection,
            "count": reply.count,
            "model_id": reply.config.model_id,
            "dim": reply.config.dim,
        }

    def query(self, kind: str, body: bytes, among: str, k: int) -> list[dict[str, Any]]:
        if among not in AMONG:
            raise QueryError(400, f"unknown choice {among!r}: use one of {', '.join(AMONG)}")
        if not 1 <= k <= 100:
            raise QueryError(400, "k must be between 1 and 100")
        if kind not in ("text", "image", "audio"):
            raise QueryError(400, f"unknown input {kind!r}: use text, image or audio")
        words = body.decode("utf-8", errors="replace").strip() if kind == "text" else None
        if kind == "text" and not words:
            raise QueryError(400, "type some words to search with")
        if kind != "text" and not body:
            raise QueryError(400, "the file is empty")
        with self._explained():
            hits = self._client.query(
                self.collection,
                text=words,
                image=body if kind == "image" else None,
                audio=body if kind == "audio" else None,
                k=k,
                modalities=AMONG[among],
            )
        return [self._hit(h) for h in hits]

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

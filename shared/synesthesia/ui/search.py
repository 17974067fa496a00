"""What the page asks the search service, as plain data: one query in, JSON-ready hits out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import grpc
from google.protobuf import json_format

from synesthesia.modality import Modality
from synesthesia.protoconv import modality_from_proto, modality_to_proto
from synesthesia.serving.server import channel_options
from synesthesia.v1 import search_pb2, search_pb2_grpc

AMONG = {
    "all": (),
    "images": (Modality.IMAGE,),
    "sounds": (Modality.AUDIO,),
    "texts": (Modality.TEXT,),
}
# gRPC status -> HTTP status for the page; a user's mistake is 400 with the service's details.
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.FAILED_PRECONDITION: 503,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
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
        options = [o for o in channel_options() if not o[0].startswith("grpc.keepalive")]
        self._channel = grpc.insecure_channel(self.address, options=options)
        self._stub = search_pb2_grpc.SearchServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def _call(self, method: str, request: Any) -> Any:
        try:
            return getattr(self._stub, method)(request, timeout=self.timeout)
        except grpc.RpcError as err:
            code = err.code()
            status = HTTP_STATUS.get(code, 502)
            raise QueryError(status, f"{code.name}: {err.details()}") from None

    def info(self) -> dict[str, Any]:
        reply = self._call(
            "DescribeCollection", search_pb2.DescribeCollectionRequest(collection=self.collection)
        )
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
        req = search_pb2.QueryRequest(collection=self.collection, k=k)
        req.modalities.extend(modality_to_proto(m) for m in AMONG[among])
        if kind == "text":
            words = body.decode("utf-8", errors="replace").strip()
            if not words:
                raise QueryError(400, "type some words to search with")
            req.text = words
        elif kind == "image":
            req.image = body
        elif kind == "audio":
            req.audio = body
        else:
            raise QueryError(400, f"unknown input {kind!r}: use text, image or audio")
        if kind != "text" and not body:
            raise QueryError(400, "the file is empty")
        reply = self._call("Query", req)
        return [self._hit(h) for h in reply.hits]

    def _hit(self, hit: search_pb2.QueryHit) -> dict[str, Any]:
        meta = json_format.MessageToDict(hit.metadata)
        path = str(meta.get("path", ""))
        url = ""
        if path and self.gallery is not None and media_file(self.gallery, path) is not None:
            url = "/media/" + quote(path)
        return {
            "id": hit.id,
            "score": round(float(hit.score), 4),
            "modality": modality_from_proto(hit.modality).value,
            "caption": str(meta.get("caption", "")),
            "path": path,
            "url": url,
        }


def media_file(root: Path, rel: str) -> Path | None:
    """``root/rel`` when it is a picture, sound or text file inside ``root``; else None (so no
    path, however spelled — ``..``, absolute, symlinked out — reaches a file outside it)."""
    from synesthesia.search_cli import EXTENSIONS

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

"""``synesthesia index`` and ``synesthesia search``: a folder of pictures, sounds and texts into a
collection (resumable: ids are content hashes and existing ids are skipped), and ranked tables
of cross-modal queries."""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
from google.protobuf import json_format, struct_pb2

from synesthesia.modality import Modality
from synesthesia.protoconv import modality_from_proto, modality_to_proto
from synesthesia.serving.server import channel_options
from synesthesia.v1 import search_pb2, search_pb2_grpc

EXTENSIONS = {
    **dict.fromkeys((".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp"), Modality.IMAGE),
    **dict.fromkeys((".wav", ".flac", ".ogg", ".mp3"), Modality.AUDIO),
    ".txt": Modality.TEXT,
}
DEFAULT_SEARCH = "127.0.0.1:50054"


def content_id(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:24]


def walk(root: Path) -> Iterator[tuple[Path, Modality]]:
    for path in sorted(root.rglob("*")):
        modality = EXTENSIONS.get(path.suffix.lower())
        if modality is not None and path.is_file():
            yield path, modality


def stub_for(target: str) -> tuple[grpc.Channel, search_pb2_grpc.SearchServiceStub]:
    channel = grpc.insecure_channel(target, options=channel_options())
    return channel, search_pb2_grpc.SearchServiceStub(channel)


def ensure_collection(stub: search_pb2_grpc.SearchServiceStub, name: str) -> None:
    try:
        stub.DescribeCollection(search_pb2.DescribeCollectionRequest(collection=name), timeout=30)
    except grpc.RpcError as err:
        if err.code() != grpc.StatusCode.NOT_FOUND:
            raise
        stub.CreateCollection(
            search_pb2.CreateCollectionRequest(config=search_pb2.CollectionConfig(name=name)),
            timeout=60,
        )


def upsert_item(path: Path, modality: Modality, root: Path) -> search_pb2.UpsertItem:
    data = path.read_bytes()
    meta = struct_pb2.Struct()
    meta.update({"path": str(path.relative_to(root)), "name": path.stem})
    item = search_pb2.UpsertItem(
        id=content_id(data), modality=modality_to_proto(modality), metadata=meta
    )
    if modality is Modality.TEXT:
        text = data.decode("utf-8", errors="replace").strip()
        meta.update({"caption": text[:500]})
        item.metadata.CopyFrom(meta)
        item.text = text
    else:
        item.data = data
    return item


def index_folder(
    target: str, root: Path, collection: str, batch: int = 16, progress: bool = True
) -> tuple[int, int]:
    """Returns (added, skipped)."""
    from tqdm import tqdm

    files = list(walk(root))
    channel, stub = stub_for(target)
    with channel:
        ensure_collection(stub, collection)
        todo: list[tuple[Path, Modality]] = []
        ids = {p: content_id(p.read_bytes()) for p, _ in files}
        existing: set[str] = set()
        id_list = list(ids.values())
        for start in range(0, len(id_list), 500):
            got = stub.Get(
                search_pb2.GetRequest(collection=collection, ids=id_list[start : start + 500]),
                timeout=60,
            )
            existing.update(i.id for i in got.items)
        todo = [(p, m) for p, m in files if ids[p] not in existing]
        bar = tqdm(
            total=len(todo), unit="file", desc=f"indexing into {collection!r}", disable=not progress
        )

        def requests() -> Iterator[search_pb2.UpsertStreamRequest]:
            for start in range(0, len(todo), batch):
                part = todo[start : start + batch]
                yield search_pb2.UpsertStreamRequest(
                    collection=collection, items=[upsert_item(p, m, root) for p, m in part]
                )

        added = 0
        for ack in stub.UpsertStream(requests(), timeout=3600):
            added += len(ack.ids)
            bar.update(len(ack.ids))
        bar.close()
    return added, len(files) - len(todo)


def index_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="synesthesia index", description="index a folder of pictures, sounds and .txt files"
    )
    parser.add_argument("folder", type=Path)
    parser.add_argument("--collection", "-c", required=True)
    parser.add_argument("--address", default=DEFAULT_SEARCH, help="search service host:port")
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args(argv)
    try:
        added, skipped = index_folder(args.address, args.folder, args.collection, args.batch)
    except grpc.RpcError as err:
        print(f"error: {err.code().name}: {err.details()}", file=sys.stderr)
        return 1
    print(f"added {added}, already indexed {skipped}")
    return 0


def query_request(args: argparse.Namespace) -> search_pb2.QueryRequest:
    req = search_pb2.QueryRequest(collection=args.collection, k=args.k)
    if args.text:
        req.text = args.text
    elif args.image:
        req.image = Path(args.image).read_bytes()
    elif args.audio:
        req.audio = Path(args.audio).read_bytes()
    else:
        req.id = args.id
    if args.only:
        req.modalities.append(modality_to_proto(args.only))
    return req


def format_hits(hits: list[search_pb2.QueryHit]) -> str:
    lines = [f"{'#':>2}  {'score':>6}  {'kind':5}  {'item':40}"]
    for rank, h in enumerate(hits, 1):
        meta = json_format.MessageToDict(h.metadata)
        label = meta.get("caption") or meta.get("path") or h.id
        lines.append(
            f"{rank:>2}  {h.score:6.3f}  {modality_from_proto(h.modality).value:5}  "
            f"{str(label)[:60]}"
        )
    return "\n".join(lines)


def search_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="synesthesia search")
    parser.add_argument("--collection", "-c", required=True)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--text")
    what.add_argument("--image", help="a picture file")
    what.add_argument("--audio", help="a sound file")
    what.add_argument("--id", help="a stored item's id")
    parser.add_argument("--only", choices=[m.value for m in Modality])
    parser.add_argument("-k", type=int, default=5)
    parser.add_argument("--address", default=DEFAULT_SEARCH)
    args = parser.parse_args(argv)
    channel, stub = stub_for(args.address)
    with channel:
        try:
            reply = stub.Query(query_request(args), timeout=60)
        except grpc.RpcError as err:
            print(f"error: {err.code().name}: {err.details()}", file=sys.stderr)
            return 1
    print(format_hits(list(reply.hits)))
    return 0

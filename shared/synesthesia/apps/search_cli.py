"""``synesthesia index``, ``search`` and ``classify``: a folder of pictures, sounds and texts into a
collection (see ``synesthesia.apps.indexing``), a ranked table of a cross-modal query, and labels
ranked for one item (zero-shot)."""

from __future__ import annotations

import argparse
from pathlib import Path

from synesthesia.apps.client_args import add_client_flags, client_options
from synesthesia.apps.indexing import index_folder
from synesthesia.client import Hit, LabelScore, SearchClient
from synesthesia.modality import Modality

DEFAULT_SEARCH = "127.0.0.1:50054"


def index_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="synesthesia index",
        description="index a folder of pictures, sounds and .txt files (a .txt beside a picture "
        "or sound, with the same name, is its caption)",
    )
    parser.add_argument("folder", type=Path)
    parser.add_argument("--collection", "-c", required=True)
    parser.add_argument("--address", default=DEFAULT_SEARCH, help="search service host:port")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument(
        "--caption-items",
        action="store_true",
        help="also index caption .txt files as text items of their own",
    )
    add_client_flags(parser)
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        parser.error(f"{args.folder} is not a folder")
    with SearchClient(args.address, **client_options(args)) as client:
        done = index_folder(
            client, args.folder, args.collection, caption_items=args.caption_items, batch=args.batch
        )
    refused = f", refused {len(done.rejected)} (named above)" if done.rejected else ""
    print(f"added {done.added}, already indexed {done.already}{refused}")
    return 0


def format_hits(hits: list[Hit]) -> str:
    lines = [f"{'#':>2}  {'score':>6}  {'kind':5}  {'item':40}"]
    for rank, h in enumerate(hits, 1):
        label = " ".join(str(h.metadata.get("caption") or h.metadata.get("path") or h.id).split())
        lines.append(f"{rank:>2}  {h.score:6.3f}  {h.modality.value:5}  {label[:60]}")
    return "\n".join(lines)


def search_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="synesthesia search")
    parser.add_argument("--collection", "-c", required=True)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--text")
    what.add_argument("--image", type=Path, help="a picture file")
    what.add_argument("--audio", type=Path, help="a sound file")
    what.add_argument("--id", help="a stored item's id")
    parser.add_argument("--only", choices=[m.value for m in Modality])
    parser.add_argument("-k", type=int, default=5)
    parser.add_argument("--address", default=DEFAULT_SEARCH)
    add_client_flags(parser)
    args = parser.parse_args(argv)
    query = {"text": args.text, "id": args.id, "image": args.image, "audio": args.audio}
    with SearchClient(args.address, **client_options(args)) as client:
        hits = client.query(
            args.collection, k=args.k, modalities=[args.only] if args.only else [], **query
        )
    print(format_hits(hits))
    return 0


def format_labels(labels: list[LabelScore]) -> str:
    lines = [f"{'#':>2}  {'prob':>6}  {'score':>6}  label"]
    for rank, x in enumerate(labels, 1):
        lines.append(f"{rank:>2}  {x.probability:6.3f}  {x.score:6.3f}  {x.label}")
    return "\n".join(lines)


def classify_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="synesthesia classify",
        description="rank candidate labels for a picture, a sound or words (zero-shot, through "
        "the search service)",
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--text")
    what.add_argument("--image", type=Path, help="a picture file")
    what.add_argument("--audio", type=Path, help="a sound file")
    parser.add_argument("--labels", required=True, help="comma-separated, e.g. dog,cat,cow")
    parser.add_argument("--template", default="", help='e.g. "a photo of a {}"')
    parser.add_argument("--temperature", type=float, default=0.0, help="0: the service default")
    parser.add_argument("--address", default=DEFAULT_SEARCH, help="search service host:port")
    add_client_flags(parser)
    args = parser.parse_args(argv)
    labels = [x.strip() for x in args.labels.split(",") if x.strip()]
    if not labels:
        parser.error("--labels needs at least one label")
    with SearchClient(args.address, **client_options(args)) as client:
        ranked = client.classify(
            labels,
            text=args.text,
            image=args.image,
            audio=args.audio,
            template=args.template,
            temperature=args.temperature,
        )
    print(format_labels(ranked))
    return 0

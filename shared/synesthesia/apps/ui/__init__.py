"""``synesthesia ui``: a small local web page that searches a collection with a sound, a picture
or words (over gRPC, through the search service) and shows the results as thumbnails, players,
captions and scores."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from synesthesia.apps.search_cli import DEFAULT_SEARCH
from synesthesia.apps.ui.search import Searcher
from synesthesia.apps.ui.server import UiServer

__all__ = ["Searcher", "UiServer", "ui_main"]


def ui_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="synesthesia ui", description="serve the search page on http://127.0.0.1:PORT/"
    )
    parser.add_argument("--address", default=DEFAULT_SEARCH, help="search service host:port")
    parser.add_argument("--collection", "-c", default="tuxpaint", help="collection to search")
    parser.add_argument(
        "--gallery",
        type=Path,
        help="the indexed folder (results' pictures and sounds come from it)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    if args.gallery is not None and not args.gallery.is_dir():
        parser.error(f"--gallery {args.gallery} is not a folder")
    server = UiServer(Searcher(args.address, args.collection, args.gallery), args.host, args.port)
    server.start()
    print(
        f"search page: {server.url}  (search service {args.address}, collection "
        f"{args.collection!r}); Ctrl-C stops it",
        flush=True,
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0

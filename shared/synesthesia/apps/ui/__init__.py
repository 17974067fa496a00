"""``synesthesia ui``: a small local web page that searches a collection with a sound, a picture
or words (over gRPC, through the search service) and shows the results as thumbnails, players,
captions and scores; "more like this" on every result, "load more", and "which of these labels?"
(zero-shot classification).

Bound beyond loopback, the page must be protected: a page token (``--page-token`` or
``SYNESTHESIA_PAGE_TOKEN``, or ``--new-page-token``), HTTPS (``--page-tls-cert`` and
``--page-tls-key``), or both; otherwise it refuses to start unless ``--insecure``. Its own calls
to the search service take ``--tls-ca``/``--tls-cert``/``--tls-key``/``--token`` like every
command (or the ``SYNESTHESIA_CLIENT_TLS_*``/``SYNESTHESIA_TOKEN`` variables)."""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from pathlib import Path

from synesthesia.apps.client_args import add_client_flags, client_options
from synesthesia.apps.search_cli import DEFAULT_SEARCH
from synesthesia.apps.ui.search import Searcher
from synesthesia.apps.ui.server import PageSecurity, UiServer
from synesthesia.serving.security import is_loopback

__all__ = ["PageSecurity", "Searcher", "UiServer", "page_security", "ui_main"]
ENV_PAGE_TOKEN = "SYNESTHESIA_PAGE_TOKEN"


def page_parser() -> argparse.ArgumentParser:
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
    page = parser.add_argument_group("the page's own protection (needed beyond loopback)")
    page.add_argument(
        "--page-token", help=f"token every API request must carry (default: ${ENV_PAGE_TOKEN})"
    )
    page.add_argument(
        "--new-page-token", action="store_true", help="make a random page token and print it"
    )
    page.add_argument("--page-tls-cert", type=Path, help="PEM certificate: serve HTTPS")
    page.add_argument("--page-tls-key", type=Path, help="PEM key of --page-tls-cert")
    page.add_argument(
        "--insecure", action="store_true", help="allow a non-loopback bind with no protection"
    )
    add_client_flags(parser, wait=False)
    return parser


def page_security(args: argparse.Namespace, parser: argparse.ArgumentParser) -> PageSecurity:
    """The page's protection from the flags; refuses an unprotected non-loopback bind."""
    token = args.page_token or os.environ.get(ENV_PAGE_TOKEN) or None
    if args.new_page_token:
        token = "page_" + secrets.token_urlsafe(24)
    if (args.page_tls_cert is None) != (args.page_tls_key is None):
        parser.error("--page-tls-cert and --page-tls-key go together")
    for path in (args.page_tls_cert, args.page_tls_key):
        if path is not None and not path.is_file():
            parser.error(f"{path} is not a file")
    security = PageSecurity(token, args.page_tls_cert, args.page_tls_key)
    if not is_loopback(args.host) and token is None and not security.tls:
        if not args.insecure:
            parser.error(
                f"refusing to serve the page on {args.host} unprotected: anyone who reaches it "
                "could search (and see) the whole collection. Give it a token (--page-token, "
                f"${ENV_PAGE_TOKEN} or --new-page-token) and/or HTTPS (--page-tls-cert and "
                "--page-tls-key), bind 127.0.0.1, or accept the risk with --insecure."
            )
        print(f"WARNING: the page on {args.host} has no token and no TLS", file=sys.stderr)
    return security


def ui_main(argv: list[str]) -> int:
    parser = page_parser()
    args = parser.parse_args(argv)
    if args.gallery is not None and not args.gallery.is_dir():
        parser.error(f"--gallery {args.gallery} is not a folder")
    security = page_security(args, parser)
    searcher = Searcher(
        args.address, args.collection, args.gallery, client_options=client_options(args)
    )
    server = UiServer(searcher, args.host, args.port, security)
    server.start()
    print(
        f"search page: {server.login_url}  (search service {args.address}, collection "
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

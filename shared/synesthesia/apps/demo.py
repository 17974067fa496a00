"""``synesthesia demo``: the local stack (three encoders + search as processes on loopback, the
index on disk under --data-dir), a gallery indexed into it (Tux Paint's stamps from Debian, or
--gallery DIR), four cross-modal queries printed as ranked tables, then the search page —
running until Ctrl-C (or stopping after the queries with --once)."""

from __future__ import annotations

import argparse
import re
import socket
import sys
import threading
import time
from pathlib import Path

from synesthesia.apps.demo_queries import DEFAULT_WORDS, build_queries, report, run_queries
from synesthesia.apps.gallery import obtain_tuxpaint
from synesthesia.apps.indexing import index_folder
from synesthesia.apps.stack import LocalStack
from synesthesia.client import EncoderClient, SearchClient
from synesthesia.errors import NotFound, SynesthesiaError
from synesthesia.health import SERVING, health_status
from synesthesia.serving.context import configure_logging

ENCODERS = ("text", "image", "audio")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="synesthesia demo", description=__doc__)
    p.add_argument("--data-dir", type=Path, default=Path("data"), help="cache, index and logs")
    p.add_argument("--gallery", type=Path, help="index this folder instead of the Tux Paint stamps")
    p.add_argument("--collection", help="default: tuxpaint, or the --gallery folder's name")
    p.add_argument(
        "--base-port", type=int, default=50051, help="text; image +1, audio +2, search +3"
    )
    p.add_argument("--ui-port", type=int, default=8080, help="the search page's port")
    p.add_argument("--sound", type=Path, help="query sound (default: the gallery's dog.ogg)")
    p.add_argument("--picture", type=Path, help="query picture (default: the gallery's cow.png)")
    p.add_argument("--words", default=DEFAULT_WORDS, help="query words")
    p.add_argument("-k", type=int, default=5, help="rows per table")
    p.add_argument("--once", action="store_true", help="stop after the queries (no page)")
    args = p.parse_args(argv)
    if args.gallery is not None and not args.gallery.is_dir():
        p.error(f"--gallery {args.gallery} is not a folder")
    if args.collection is None:
        name = args.gallery.resolve().name if args.gallery else "tuxpaint"
        args.collection = re.sub(r"[^A-Za-z0-9_.-]", "-", name)[:64] or "gallery"
    return args


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def start_with_progress(stack: LocalStack) -> None:
    """``stack.start()`` in a thread while a bar counts the services that report SERVING."""
    from tqdm import tqdm

    failure: list[BaseException] = []

    def start() -> None:
        try:
            stack.start(timeout=600)
        except BaseException as err:  # reported by the main thread
            failure.append(err)

    thread = threading.Thread(target=start, daemon=True)
    thread.start()
    ready: set[str] = set()
    with tqdm(total=len(stack.services), unit="service", desc="starting (loading models)") as bar:
        while thread.is_alive():
            for svc in stack.services:
                if svc.name not in ready and health_status(svc.target, timeout=1) == SERVING:
                    ready.add(svc.name)
                    bar.update(1)
                    bar.set_postfix_str(", ".join(sorted(ready)))
            time.sleep(0.5)
        bar.update(len(stack.services) - bar.n)
    if failure:
        raise failure[0]


def build_stack(args: argparse.Namespace) -> LocalStack:
    stack = LocalStack(log_dir=args.data_dir / "logs")
    for offset, name in enumerate(ENCODERS):
        stack.add(name, args.base_port + offset)
    stack.add(
        "search",
        args.base_port + 3,
        synesthesia_data_dir=str(args.data_dir / "index"),
        **{
            f"synesthesia_{n}_encoder": f"127.0.0.1:{args.base_port + i}"
            for i, n in enumerate(ENCODERS)
        },
    )
    return stack


def show_stack(stack: LocalStack) -> str:
    """Prints each service and its model; returns the encoders' model id."""
    model_ids = set()
    for svc in stack.services:
        line = f"  {svc.name:6s} {svc.target}"
        if svc.name in ENCODERS:
            with EncoderClient(svc.target) as client:
                info = client.info()
            line += f"  model {info.model_id}, {info.dim}-d"
            model_ids.add(info.model_id)
        print(line)
    if len(model_ids) != 1:
        raise RuntimeError(f"the encoders serve different models: {sorted(model_ids)}")
    return model_ids.pop()


def drop_if_stale(client: SearchClient, collection: str, model_id: str) -> None:
    """A collection indexed with other weights is dropped (its vectors are not comparable)."""
    try:
        old = client.describe_collection(collection).config.model_id
    except NotFound:
        return
    if old and old != model_id:
        print(f"collection {collection!r} was indexed with {old}; indexing it again")
        client.drop_collection(collection)


def run(args: argparse.Namespace, stack: LocalStack) -> int:
    if args.gallery is None:
        gallery = obtain_tuxpaint(args.data_dir / "cache")
        print(f"gallery: Tux Paint stamps (Debian tuxpaint-stamps-default, GPL-2) in {gallery}")
    else:
        gallery = args.gallery.resolve()
        print(f"gallery: {gallery}")
    print(f"starting the local stack (logs in {args.data_dir / 'logs'}) …", flush=True)
    t0 = time.monotonic()
    start_with_progress(stack)
    print(f"all services SERVING after {time.monotonic() - t0:.1f} s:")
    model_id = show_stack(stack)
    search = stack.services[-1].target
    with SearchClient(search) as client:
        drop_if_stale(client, args.collection, model_id)
        # caption files are items too, so that the page can search among texts
        indexed = index_folder(client, gallery, args.collection, caption_items=True)
        info = client.describe_collection(args.collection)
        print(
            f"collection {args.collection!r}: {info.count} items ({indexed.added} added now, "
            f"{indexed.already} already there, {len(indexed.rejected)} files refused), "
            f"index in {args.data_dir / 'index'}"
        )
        queries = build_queries(args.collection, gallery, args.sound, args.picture, args.words)
        for answer in run_queries(client, queries):
            print(report(answer, args.k))
    if args.once:
        return 0
    return serve_page(args, stack, search, gallery)


def serve_page(args: argparse.Namespace, stack: LocalStack, search: str, gallery: Path) -> int:
    from synesthesia.apps.ui import Searcher, UiServer

    ui = UiServer(Searcher(search, args.collection, gallery), port=args.ui_port).start()
    print(
        f"\nsearch page: {ui.url}  (gRPC: search {search}); the stack keeps running, "
        "Ctrl-C stops everything.",
        flush=True,
    )
    try:
        while True:
            dead = [s for s in stack.services if s.proc is None or s.proc.poll() is not None]
            if dead:
                log = args.data_dir / "logs" / f"{dead[0].name}.log"
                print(f"error: the {dead[0].name} service stopped; see {log}", file=sys.stderr)
                return 1
            time.sleep(1)
    finally:
        ui.stop()


def demo_main(argv: list[str]) -> int:
    args = parse_args(argv)
    configure_logging("WARNING")
    ports = [args.base_port + i for i in range(4)] + ([] if args.once else [args.ui_port])
    busy = [p for p in ports if not port_free(p)]
    if busy:
        print(
            f"error: port(s) {', '.join(map(str, busy))} on 127.0.0.1 are in use (is a demo "
            "already running?); choose others with --base-port / --ui-port",
            file=sys.stderr,
        )
        return 1
    stack = build_stack(args)
    try:
        return run(args, stack)
    except RuntimeError as err:  # GalleryError, or a service that did not start
        print(f"error: {err}", file=sys.stderr)
        return 1
    except SynesthesiaError as err:  # a service's answer, e.g. UNAVAILABLE
        print(f"error: {err.code}: {err.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping …", flush=True)
        return 130
    finally:
        stack.stop()

"""The page's HTTP server (standard library): the static page, ``/api/info``, ``/api/search`` (the
query's bytes as the request body) and ``/media/<path>`` (files of the indexed gallery only)."""

from __future__ import annotations

import json
import mimetypes
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from synesthesia.apps.ui.search import QueryError, Searcher, media_file

MAX_UPLOAD_BYTES = 32 * 1024 * 1024
STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}
mimetypes.add_type("audio/ogg", ".ogg")
mimetypes.add_type("audio/flac", ".flac")
mimetypes.add_type("image/webp", ".webp")


def static_bytes(name: str) -> bytes:
    return resources.files("synesthesia.apps.ui").joinpath("static", name).read_bytes()


class Handler(BaseHTTPRequestHandler):
    server: UiHttpServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet; errors go to the page
        pass

    def _send(self, status: int, body: bytes, content_type: str, cache: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "max-age=3600" if cache else "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json")

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message})

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path in STATIC:
            name, content_type = STATIC[url.path]
            self._send(200, static_bytes(name), content_type)
        elif url.path == "/api/info":
            try:
                self._json(200, self.server.searcher.info())
            except QueryError as err:
                self._error(err.status, err.message)
        elif url.path.startswith("/media/"):
            self._media(unquote(url.path.removeprefix("/media/")))
        else:
            self._error(404, "not found")

    def _media(self, rel: str) -> None:
        root = self.server.searcher.gallery
        path = media_file(root, rel) if root is not None else None
        if path is None:
            self._error(404, "not found")
            return
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        self._send(200, path.read_bytes(), content_type, cache=True)

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        if url.path != "/api/search":
            self._error(404, "not found")
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_UPLOAD_BYTES:
            self.close_connection = True
            self._error(413, f"the file is larger than {MAX_UPLOAD_BYTES // 2**20} MiB")
            return
        body = self.rfile.read(length)
        params = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            k = int(params.get("k", "8"))
        except ValueError:
            self._error(400, "k must be a number")
            return
        try:
            hits = self.server.searcher.query(
                params.get("input", ""), body, params.get("among", "all"), k
            )
        except QueryError as err:
            self._error(err.status, err.message)
            return
        self._json(200, {"hits": hits})


class UiHttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], searcher: Searcher) -> None:
        super().__init__(address, Handler)
        self.searcher = searcher


class UiServer:
    """``UiServer(searcher, port=8080).start()`` serves the page from a background thread."""

    def __init__(self, searcher: Searcher, host: str = "127.0.0.1", port: int = 8080) -> None:
        self.searcher = searcher
        self.httpd = UiHttpServer((host, port), searcher)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host if isinstance(host, str) else host.decode()}:{port}/"

    def start(self) -> UiServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.searcher.close()
        if self._thread is not None:
            self._thread.join(5)

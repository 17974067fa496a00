"""The page's HTTP server (standard library): the static page, ``/api/info``, ``/api/search`` and
``/api/classify`` (the query's bytes as the request body) and ``/media/<path>`` (files of the
indexed gallery only).

Protection (``PageSecurity``): with a page token, every ``/api/`` and ``/media/`` request must
carry it, as ``Authorization: Bearer <token>`` or as the cookie that the login URL
(``/?token=<token>``, printed by ``synesthesia ui``) sets; the page itself (HTML, script, style,
icon) stays open. With a certificate and key, the page is served over HTTPS. A request body
needs a valid ``Content-Length`` of at most 32 MiB; anything else is refused before its body is
read (400, 411, 413)."""

from __future__ import annotations

import hmac
import json
import mimetypes
import ssl
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from synesthesia.apps.ui.search import QueryError, Searcher, media_file

MAX_UPLOAD_BYTES = 32 * 1024 * 1024
COOKIE = "synesthesia_page"
STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
    "/favicon.svg": ("favicon.svg", "image/svg+xml"),
    "/favicon.ico": ("favicon.svg", "image/svg+xml"),
}
mimetypes.add_type("audio/ogg", ".ogg")
mimetypes.add_type("audio/flac", ".flac")
mimetypes.add_type("image/webp", ".webp")


@dataclass(frozen=True)
class PageSecurity:
    """``token``: required on every API and media request; ``tls_cert``/``tls_key``: HTTPS."""

    token: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        assert self.tls_cert is not None
        ctx.load_cert_chain(self.tls_cert, self.tls_key)
        return ctx


def static_bytes(name: str) -> bytes:
    return resources.files("synesthesia.apps.ui").joinpath("static", name).read_bytes()


class BodyError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class Handler(BaseHTTPRequestHandler):
    server: UiHttpServer
    protocol_version = "HTTP/1.1"
    timeout = 60  # seconds a connection may stall (TLS handshake, headers, body)

    def setup(self) -> None:
        super().setup()
        if isinstance(self.request, ssl.SSLSocket):
            self.request.do_handshake()  # here, in the connection's thread, not in accept()

    def handle(self) -> None:
        try:
            super().handle()
        except (ssl.SSLError, ConnectionError, TimeoutError):
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:  # quiet; errors go to the page
        pass

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str,
        cache: bool = False,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "max-age=3600" if cache else "no-store")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json")

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message})

    # -- the page token ------------------------------------------------------------------
    def _given_token(self) -> str | None:
        scheme, _, value = (self.headers.get("Authorization") or "").strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        for part in (self.headers.get("Cookie") or "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE and value:
                return value
        return None

    def _authorized(self) -> bool:
        token = self.server.security.token
        if token is None:
            return True
        given = self._given_token()
        return given is not None and hmac.compare_digest(given.encode(), token.encode())

    def _refuse(self) -> None:
        self.close_connection = True
        self._error(
            401,
            "this page needs its token: open the login address that "
            "'synesthesia ui' printed (…/?token=…)",
        )

    def _login(self, given: str) -> None:
        token = self.server.security.token
        if token is None or not hmac.compare_digest(given.encode(), token.encode()):
            self._refuse()
            return
        flags = "; Secure" if self.server.security.tls else ""
        cookie = f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict{flags}"
        self._send(303, b"", "text/plain", headers={"Location": "/", "Set-Cookie": cookie})

    # -- requests ------------------------------------------------------------------------
    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if url.path == "/" and "token" in query:
            self._login(query["token"][-1])
        elif url.path in STATIC:
            name, content_type = STATIC[url.path]
            self._send(200, static_bytes(name), content_type, cache=name == "favicon.svg")
        elif not url.path.startswith(("/api/", "/media/")):
            self._error(404, "not found")
        elif not self._authorized():
            self._refuse()
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

    def _body(self) -> bytes:
        """The request body, after checking its declared length (never read otherwise)."""
        if self.headers.get("Transfer-Encoding"):
            raise BodyError(411, "send the file with a Content-Length (no chunked uploads)")
        lengths = self.headers.get_all("Content-Length") or []
        if not lengths:
            raise BodyError(411, "a Content-Length header is required")
        raw = lengths[0].strip()
        if len(set(v.strip() for v in lengths)) != 1 or not (raw.isascii() and raw.isdigit()):
            raise BodyError(400, "the Content-Length header is not a length")
        length = int(raw)
        if length > MAX_UPLOAD_BYTES:
            raise BodyError(413, f"the file is larger than {MAX_UPLOAD_BYTES // 2**20} MiB")
        return self.rfile.read(length)

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        if url.path not in ("/api/search", "/api/classify"):
            self.close_connection = True
            self._error(404, "not found")
            return
        if not self._authorized():
            self._refuse()
            return
        try:
            body = self._body()
        except BodyError as err:
            self.close_connection = True  # the body (if any) is left unread
            self._error(err.status, err.message)
            return
        params = {k: v[-1] for k, v in parse_qs(url.query).items()}
        searcher = self.server.searcher
        try:
            if url.path == "/api/classify":
                labels = searcher.classify(
                    params.get("input", ""),
                    body,
                    params.get("labels", ""),
                    params.get("template", ""),
                )
                self._json(200, {"labels": labels})
                return
            k = _int(params.get("k", "8"), "k")
            offset = _int(params.get("offset", "0"), "offset")
            hits = searcher.query(
                params.get("input", ""), body, params.get("among", "all"), k, offset
            )
        except QueryError as err:
            self._error(err.status, err.message)
            return
        self._json(200, {"hits": hits})


def _int(value: str, name: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise QueryError(400, f"{name} must be a number") from None


class UiHttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A failed handshake or a dropped connection is the client's business: no traceback."""
        if isinstance(sys.exc_info()[1], ssl.SSLError | ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)

    def __init__(
        self, address: tuple[str, int], searcher: Searcher, security: PageSecurity
    ) -> None:
        super().__init__(address, Handler)
        self.searcher = searcher
        self.security = security
        if security.tls:
            self.socket = security.ssl_context().wrap_socket(
                self.socket, server_side=True, do_handshake_on_connect=False
            )


class UiServer:
    """``UiServer(searcher, port=8080).start()`` serves the page from a background thread."""

    def __init__(
        self,
        searcher: Searcher,
        host: str = "127.0.0.1",
        port: int = 8080,
        security: PageSecurity | None = None,
    ) -> None:
        self.searcher = searcher
        self.security = security or PageSecurity()
        self.httpd = UiHttpServer((host, port), searcher, self.security)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        name = host if isinstance(host, str) else host.decode()
        if ":" in name:
            name = f"[{name}]"
        return f"{'https' if self.security.tls else 'http'}://{name}:{port}/"

    @property
    def login_url(self) -> str:
        """The address to open first: it sets the token's cookie (the plain URL without one)."""
        token = self.security.token
        return f"{self.url}?token={token}" if token else self.url

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

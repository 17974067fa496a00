"""The page's own protection: a page token on every API and media request (bearer header or the
cookie the login URL sets), HTTPS with a certificate from ``synesthesia certs``, and no
unprotected bind beyond loopback."""

from __future__ import annotations

import http.client
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from synesthesia.apps.ui import PageSecurity, Searcher, UiServer
from synesthesia.serving.certs import make_certs

from tests.e2e.test_ui_server import closed_port

pytestmark = pytest.mark.e2e
TOKEN = "page_test-token"


def _server(tmp_path: Path, security: PageSecurity) -> UiServer:
    root = tmp_path / "gallery"
    root.mkdir(exist_ok=True)
    (root / "dog.png").write_bytes(b"\x89PNG picture bytes")
    searcher = Searcher(f"127.0.0.1:{closed_port()}", "tux", root, timeout=5)
    return UiServer(searcher, port=0, security=security).start()


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[UiServer]:
    ui = _server(tmp_path, PageSecurity(token=TOKEN))
    try:
        yield ui
    finally:
        ui.stop()


def get(
    ui: UiServer, path: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", ui.httpd.server_address[1], timeout=30)
    conn.request(method, path, body=b"a dog" if method == "POST" else None, headers=headers or {})
    reply = conn.getresponse()
    reply.read()
    conn.close()
    return reply


def test_the_page_token_guards_every_api_and_media_request(guarded: UiServer) -> None:
    ui = guarded
    assert get(ui, "/").status == 200  # the page itself is open
    assert get(ui, "/favicon.svg").status == 200
    for path in ("/api/info", "/media/dog.png"):
        assert get(ui, path).status == 401, path
        assert get(ui, path, {"Authorization": "Bearer wrong"}).status == 401, path
        assert get(ui, path, {"Cookie": "synesthesia_page=wrong"}).status == 401, path
    assert get(ui, "/api/search?input=text", method="POST").status == 401
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert get(ui, "/media/dog.png", bearer).status == 200
    assert get(ui, "/api/info", bearer).status == 503  # past the page: the service is down

    # the login URL sets an HttpOnly, SameSite=Strict cookie and sends the browser to "/"
    assert get(ui, "/?token=wrong").status == 401
    login = get(ui, f"/?token={TOKEN}")
    assert login.status == 303 and login.getheader("Location") == "/"
    cookie = login.getheader("Set-Cookie") or ""
    assert cookie.startswith(f"synesthesia_page={TOKEN};") and "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie and "Secure" not in cookie
    assert get(ui, "/media/dog.png", {"Cookie": f"a=b; synesthesia_page={TOKEN}"}).status == 200
    assert ui.login_url.endswith(f"/?token={TOKEN}")


def test_the_page_over_https(tmp_path: Path) -> None:
    certs = make_certs(tmp_path / "certs", servers=("page",))
    security = PageSecurity(TOKEN, certs["page"].cert, certs["page"].key)
    ui = _server(tmp_path, security)
    try:
        assert ui.url.startswith("https://127.0.0.1:")
        ctx = ssl.create_default_context(cafile=str(certs["ca"].cert))
        port = ui.httpd.server_address[1]
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=30, context=ctx)
        conn.request("GET", f"/?token={TOKEN}")
        reply = conn.getresponse()
        reply.read()
        assert reply.status == 303 and "Secure" in (reply.getheader("Set-Cookie") or "")
        conn.request("GET", "/media/dog.png", headers={"Authorization": f"Bearer {TOKEN}"})
        reply = conn.getresponse()
        assert (reply.status, reply.read()) == (200, b"\x89PNG picture bytes")
        conn.close()
        # plain HTTP to the HTTPS port gets no page (and does not stop the server)
        plain = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        with pytest.raises((http.client.HTTPException, OSError)):
            plain.request("GET", "/")
            plain.getresponse().read()
        plain.close()
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=30, context=ctx)
        conn.request("GET", "/")
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        ui.stop()


def _ui(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "synesthesia.apps.cli", "ui", "--port", "0", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_no_unprotected_page_beyond_loopback() -> None:
    refused = _ui("--host", "0.0.0.0")
    assert refused.returncode == 2 and "refusing to serve the page on 0.0.0.0" in refused.stderr
    half = _ui("--host", "0.0.0.0", "--page-tls-cert", "x.pem")
    assert half.returncode == 2 and "go together" in half.stderr

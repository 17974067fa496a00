"""The page's HTTP server without a browser: media only from inside the gallery root (no path
traversal, no symlink out, only media extensions), clear errors for bad requests and for a search
service that is down."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from synesthesia.apps.ui import Searcher, UiServer
from synesthesia.apps.ui.server import MAX_UPLOAD_BYTES

from tests.conftest import sigint_as_in_a_terminal

pytestmark = pytest.mark.e2e


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[UiServer, Path]]:
    root = tmp_path / "gallery"
    (root / "animals").mkdir(parents=True)
    (root / "animals" / "dog.png").write_bytes(b"\x89PNG picture bytes")
    (root / "animals" / "notes.sh").write_text("echo hi\n")
    (tmp_path / "secret.png").write_bytes(b"outside the gallery")
    (root / "animals" / "link.png").symlink_to(tmp_path / "secret.png")
    ui = UiServer(Searcher(f"127.0.0.1:{closed_port()}", "tux", root, timeout=5), port=0).start()
    try:
        yield ui, root
    finally:
        ui.stop()


def request(
    ui: UiServer, method: str, path: str, body: bytes | None = None, headers: dict | None = None
) -> tuple[int, bytes, str]:
    port = ui.httpd.server_address[1]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        reply = conn.getresponse()
        return reply.status, reply.read(), reply.getheader("Content-Type") or ""
    finally:
        conn.close()


def test_media_comes_only_from_inside_the_gallery(served: tuple[UiServer, Path]) -> None:
    ui, root = served
    status, body, content_type = request(ui, "GET", "/media/animals/dog.png")
    assert (status, body, content_type) == (200, b"\x89PNG picture bytes", "image/png")
    for path in (
        "/media/../secret.png",
        "/media/animals/../../secret.png",
        "/media/%2e%2e/secret.png",
        "/media/animals%2f..%2f..%2fsecret.png",
        "/media/" + str(root.parent / "secret.png"),
        "/media//etc/passwd",
        "/media/animals/link.png",
        "/media/animals/notes.sh",
        "/media/animals/missing.png",
        "/media/animals/dog.png%00.txt",
    ):
        status, body, _ = request(ui, "GET", path)
        assert status == 404 and b"outside" not in body, path


def test_the_page_and_its_assets_are_served(served: tuple[UiServer, Path]) -> None:
    ui, _ = served
    status, html, content_type = request(ui, "GET", "/")
    assert status == 200 and content_type.startswith("text/html")
    for needle in (
        b'<label for="file"',
        b'<label for="words"',
        b'<label for="among"',
        b"aria-live",
    ):
        assert needle in html
    assert request(ui, "GET", "/app.js")[0] == 200
    assert request(ui, "GET", "/style.css")[0] == 200
    assert request(ui, "GET", "/nothing-here")[0] == 404


def test_bad_requests_get_clear_messages(served: tuple[UiServer, Path]) -> None:
    ui, _ = served
    cases = [
        ("/api/search?input=video&among=all", b"x", 400, "unknown input 'video'"),
        ("/api/search?input=text&among=planets", b"a dog", 400, "unknown choice 'planets'"),
        ("/api/search?input=text&among=all&k=many", b"a dog", 400, "k must be a number"),
        ("/api/search?input=text&among=all&k=0", b"a dog", 400, "k must be between 1 and 100"),
        ("/api/search?input=text&among=all", b"   ", 400, "type some words"),
        ("/api/search?input=audio&among=all", b"", 400, "the file is empty"),
    ]
    for path, body, status, message in cases:
        got, reply, _ = request(ui, "POST", path, body)
        assert (got, message in json.loads(reply)["error"]) == (status, True), (path, reply)
    got, reply, _ = request(
        ui,
        "POST",
        "/api/search?input=audio",
        headers={"Content-Length": str(MAX_UPLOAD_BYTES + 1)},
    )
    assert got == 413 and "larger than 32 MiB" in json.loads(reply)["error"]


def test_a_search_service_that_is_down_is_named(served: tuple[UiServer, Path]) -> None:
    ui, _ = served
    down = "The search service cannot be reached"
    status, reply, _ = request(ui, "GET", "/api/info")
    assert status == 503 and json.loads(reply)["error"].startswith(down)
    status, reply, _ = request(ui, "POST", "/api/search?input=text&among=all", b"a dog")
    assert status == 503 and json.loads(reply)["error"].startswith(down)


def test_the_ui_command_serves_until_ctrl_c(tmp_path: Path) -> None:
    port = closed_port()
    cmd = [sys.executable, "-m", "synesthesia.apps.cli", "ui", "--port", str(port)]
    cmd += ["--address", f"127.0.0.1:{closed_port()}", "--gallery", str(tmp_path)]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        preexec_fn=sigint_as_in_a_terminal,
    )
    assert proc.stdout is not None
    try:
        line = proc.stdout.readline()
        assert line.startswith(f"search page: http://127.0.0.1:{port}/ "), line
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/")
        assert conn.getresponse().status == 200
        conn.close()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    bad = subprocess.run(
        [*cmd[:4], "--gallery", str(tmp_path / "nope")], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "is not a folder" in bad.stderr


def raw_request(ui: UiServer, head: bytes, timeout: float = 10) -> bytes:
    """Sends ``head`` (request line and headers, no body) and returns all the server answers
    before closing: a server that tried to read the body would block until ``timeout``."""
    port = ui.httpd.server_address[1]
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(head)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    return reply


@pytest.mark.parametrize(
    ("length", "status"),
    [("-1", 400), ("abc", 400), ("+5", 400), ("1e9", 400), (str(300 * 2**20), 413), (None, 411)],
)
def test_a_bad_content_length_is_refused_before_the_body(
    served: tuple[UiServer, Path], length: str | None, status: int
) -> None:
    ui, _ = served
    header = f"Content-Length: {length}\r\n" if length is not None else ""
    head = f"POST /api/search?input=audio HTTP/1.1\r\nHost: x\r\n{header}\r\n".encode()
    reply = raw_request(ui, head)  # returns: the server closed without waiting for a body
    assert reply.startswith(f"HTTP/1.1 {status} ".encode()), reply[:200]
    assert b'"error"' in reply


def test_chunked_uploads_are_refused(served: tuple[UiServer, Path]) -> None:
    ui, _ = served
    head = b"POST /api/search?input=audio HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert raw_request(ui, head).startswith(b"HTTP/1.1 411 ")

"""The encoder as a real process: settings from the environment, graceful drain on SIGTERM, and
proof (with strace) that a whole encode round trip opens no non-loopback connection."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from synesthesia.health import wait_for_serving
from synesthesia.v1 import common_pb2, encoder_pb2, encoder_pb2_grpc

from tests.servers import unused_port

REPO = Path(__file__).resolve().parents[2]


def _start(modality: str, env_extra: dict[str, str]) -> tuple[subprocess.Popen[str], int]:
    env = {**os.environ, "SYNESTHESIA_PORT": "0", **env_extra}
    proc = subprocess.Popen(
        [sys.executable, "-m", f"synesthesia.services.{modality}"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 120
    for line in proc.stderr:
        match = re.search(r"SERVING on port (\d+)", line)
        if match:
            return proc, int(match.group(1))
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise AssertionError("encoder process did not report SERVING")


def test_sigterm_drains_and_exits_cleanly() -> None:
    proc, port = _start("text", {"SYNESTHESIA_GRACE_SECONDS": "30"})
    try:
        target = f"127.0.0.1:{port}"
        wait_for_serving(target, timeout=30)
        with grpc.insecure_channel(target) as channel:
            stub = encoder_pb2_grpc.EncoderServiceStub(channel)
            request = encoder_pb2.EmbedRequest(
                modality=common_pb2.MODALITY_TEXT,
                items=[encoder_pb2.Item(text=f"sentence {i} " * 60) for i in range(128)],
            )
            in_flight = stub.Embed.future(request, timeout=60)
            time.sleep(0.5)  # the request is being worked on (128 long texts take seconds)
            assert not in_flight.done()
            proc.send_signal(signal.SIGTERM)
            assert len(in_flight.result().embeddings) == 128  # the in-flight call completes
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_serve_text_binds_the_port_it_is_given() -> None:
    """``synesthesia serve text --port N`` serves on N (the flag once went unread)."""
    port = unused_port()
    env = {**os.environ, "SYNESTHESIA_MODEL": "imagebind-test", "SYNESTHESIA_PORT": "1"}
    cmd = [sys.executable, "-m", "synesthesia.apps.cli", "serve", "text", "--port", str(port)]
    proc = subprocess.Popen([*cmd, "--host", "127.0.0.1"], env=env, cwd=REPO)
    try:
        wait_for_serving(f"127.0.0.1:{port}", timeout=120)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


ROUND_TRIP = r"""
import asyncio, io, sys
sys.path.insert(0, sys.argv[1])
from synesthesia.client import EncoderClient
from synesthesia.modality import Modality
from synesthesia.services.encoder.app import start_encoder
from synesthesia.services.encoder.settings import EncoderSettings
from tests.servers import running
from tests import media_factory as mf

items = {Modality.TEXT: ["a dog"], Modality.IMAGE: [mf.png()], Modality.AUDIO: [mf.wav(1.0)]}
for m, contents in items.items():
    with running(lambda m=m: start_encoder(EncoderSettings(modality=m, port=0))) as (server, _):
        with EncoderClient(f"localhost:{server.port}") as client:
            assert client.embed(m, contents).shape == (1, 384)
print("ROUND TRIP OK")
"""


@pytest.mark.skipif(
    shutil.which("strace") is None and os.environ.get("CI") != "true",
    reason="strace not installed (CI installs it)",
)
def test_no_non_loopback_connection_is_attempted(tmp_path: Path) -> None:
    trace = tmp_path / "trace.txt"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    result = subprocess.run(
        [
            "strace",
            "-f",
            "-qq",
            "-e",
            "trace=connect,sendto,sendmsg",
            "-o",
            str(trace),
            sys.executable,
            "-c",
            ROUND_TRIP,
            str(REPO),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert "ROUND TRIP OK" in result.stdout, result.stderr[-3000:]
    lines = trace.read_text().splitlines()
    inet = [line for line in lines if "AF_INET" in line]
    assert inet, "strace saw no socket use at all; the trace is not working"
    outside = [
        line
        for line in inet
        if not re.search(r'inet_addr\("127\.|inet_pton\(AF_INET6, "::1"|"::ffff:127\.', line)
    ]
    assert not outside, "non-loopback connections:\n" + "\n".join(outside[:20])

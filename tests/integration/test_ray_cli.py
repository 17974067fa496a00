"""``synesthesia serve ray`` as a user runs it: a real process that starts its own local Ray,
reports SERVING through grpc.health.v1 (``python -m synesthesia.apps.healthcheck``), answers the
ordinary client WITHOUT metadata when it hosts one application, and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from synesthesia.client import EncoderClient
from synesthesia.health import health_status
from synesthesia.models import create_model

from tests.servers import unused_port

pytestmark = [pytest.mark.ray, pytest.mark.integration]

pytest.importorskip("ray")


def test_serve_ray_cli_serves_and_drains(tmp_path: Path) -> None:
    port = unused_port()
    log = tmp_path / "serve-ray.log"
    cmd = [
        sys.executable, "-m", "synesthesia.apps.cli", "serve", "ray",
        "--services", "text", "--port", str(port), "--http-port", str(unused_port()),
        "--num-cpus", "2", "--object-store-mb", "200", "--max-replicas", "1",
    ]  # fmt: skip
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        health = subprocess.run(
            [
                sys.executable,
                "-m",
                "synesthesia.apps.healthcheck",
                f"127.0.0.1:{port}",
                "--wait",
                "240",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert health.returncode == 0, health.stdout + log.read_text(errors="replace")[-3000:]
        assert health_status(f"127.0.0.1:{port}", application="text") == "SERVING"
        texts = ["a dog barking", "rain on a tin roof"]
        with EncoderClient(f"127.0.0.1:{port}", timeout=120) as client:  # no metadata at all
            got = client.embed("text", texts)
        want = create_model("synesthesia-minilm", modalities=["text"]).embed("text", texts)
        assert np.abs(got - want).max() <= 1e-5
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0
        assert "text: RUNNING after" in log.read_text(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert health_status(f"127.0.0.1:{port}", timeout=1) != "SERVING"

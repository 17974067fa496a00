"""The README's "A first client, in three ecosystems" runs as written, against a real text
encoder and search service on loopback: the Python SDK, Node.js with the .proto files from the
installed package, and a client built from server reflection alone."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from synesthesia.modality import Modality
from synesthesia.services.encoder.app import start_encoder
from synesthesia.services.encoder.config import load_embedder
from synesthesia.services.encoder.settings import EncoderSettings

from tests.servers import running
from tests.services.test_search_service import start_search

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
NODE_MODULES = REPO / ".tools" / "node_modules"


def snippet(kind: str) -> str:
    """The fenced block right after ``<!-- walkthrough:KIND -->`` in the README."""
    readme = (REPO / "README.md").read_text()
    match = re.search(rf"<!-- walkthrough:{kind} -->\n```\w+\n(.*?)```", readme, flags=re.S)
    assert match, f"README has no walkthrough:{kind} block"
    return match.group(1)


@pytest.fixture(scope="module")
def targets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    with ExitStack() as stack:
        text = EncoderSettings(modality=Modality.TEXT, port=0)
        server, _ = stack.enter_context(
            running(lambda: start_encoder(text, load_embedder(text, Modality.TEXT)))
        )
        encoder = f"127.0.0.1:{server.port}"
        search = start_search(stack, tmp_path_factory.mktemp("walk"), {Modality.TEXT: encoder})
        yield {"localhost:50051": encoder, "localhost:50054": search.target}  # type: ignore[attr-defined]


def run(kind: str, targets: dict[str, str], command: list[str]) -> str:
    code = snippet(kind)
    for default, actual in targets.items():
        code = code.replace(default, actual)
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "NODE_PATH": str(NODE_MODULES),
        "PYTHONPATH": str(REPO),
    }
    done = subprocess.run(
        [*command, code], capture_output=True, text=True, timeout=120, env=env, cwd=REPO
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_python_sdk(targets: dict[str, str]) -> None:
    out = run("python", targets, [sys.executable, "-c"]).split()
    assert out[:2] == ["(2,", "384)"] and out[-1] == "dog"


def test_node_with_the_shipped_protos(targets: dict[str, str]) -> None:
    node = shutil.which("node")
    if node is None or not (NODE_MODULES / "@grpc" / "grpc-js").is_dir():
        message = "node or .tools/node_modules/@grpc (scripts/bootstrap.sh) is missing"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    model_id, dim, length = run("node", targets, [node, "-e"]).split()
    assert model_id.startswith("synesthesia-minilm@") and dim == length == "384"


def test_a_client_from_reflection_alone(targets: dict[str, str]) -> None:
    out = run("reflection", targets, [sys.executable, "-c"])
    assert 'model_id: "synesthesia-minilm@' in out and "dim: 384" in out

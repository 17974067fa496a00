"""``synesthesia demo --gallery DIR --once`` end to end: the four services as processes, a Tux
Paint gallery (from ../shared/data, no apt) indexed on disk, four ranked tables printed. The
tables must be the services' answers: the same queries, asked again of a search service reopened
on the demo's index, print the very same lines."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from synesthesia.apps.demo import demo_main
from synesthesia.apps.demo_queries import build_queries, report, run_queries
from synesthesia.client import SearchClient
from synesthesia.index import IndexManager

from tests.conftest import REPO, sigint_as_in_a_terminal
from tests.e2e.tux import LABELS, build_gallery, search_stack

pytestmark = pytest.mark.integration


def free_base_port(count: int = 4) -> int:
    """A port p with p..p+count-1 free on loopback (so the demo's own check passes)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = int(s.getsockname()[1])
        if base + count > 65535:
            continue
        socks = []
        try:
            for p in range(base, base + count):
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError("no 4 consecutive free ports")


def test_demo_prints_the_services_answers(data_dir: Path, tmp_path: Path) -> None:
    gallery = build_gallery(data_dir, tmp_path / "gallery")
    work = tmp_path / "work"
    stale = IndexManager(work / "index")  # left by a run with other weights: to be replaced
    stale.create_collection("gallery", 384, model_id="synesthesia-minilm@older")
    stale.close()
    cmd = [
        sys.executable,
        "-m",
        "synesthesia.apps.cli",
        "demo",
        "--gallery",
        str(gallery),
        "--once",
    ]
    cmd += ["--data-dir", str(work), "--base-port", str(free_base_port()), "-k", "4"]
    env = {**os.environ, "TQDM_DISABLE": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env, cwd=REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "all services SERVING" in out
    assert re.search(r"text +127\.0\.0\.1:\d+ +model synesthesia-minilm@\w+, 384-d", out)
    assert "'gallery' was indexed with synesthesia-minilm@older; indexing it again" in out
    n = 3 * len(LABELS)
    assert (
        f"collection 'gallery': {n} items ({n} added now, 0 already there, 0 files refused)" in out
    )
    assert (work / "logs" / "search.log").exists() and (work / "index").is_dir()

    # the demo's index, reopened
    with search_stack(work / "index") as target, SearchClient(target) as client:
        assert client.describe_collection("gallery").count == n
        answers = run_queries(client, build_queries("gallery", gallery))
    assert [a.query.title.split(":")[0] for a in answers] == [
        "a sound -> pictures",
        "a picture -> sounds",
        "words -> pictures",
        "words -> sounds",
    ]
    assert "a sound -> pictures: animals/mammals/dogs/dog.ogg" in out
    for answer in answers:
        assert answer.watched_rank is not None  # dog.png, cow.ogg, dog.ogg are all indexed
        table = report(answer, 4)
        assert table in out, f"printed:\n{out}\nexpected:\n{table}"
        assert len(answer.hits) == {"pictures": 12, "sounds": 12}[answer.query.noun]


def test_demo_serves_the_page_until_ctrl_c(data_dir: Path, tmp_path: Path) -> None:
    gallery = build_gallery(data_dir, tmp_path / "gallery", labels=("dog", "cow"))
    ui_port = free_base_port(1)
    cmd = [sys.executable, "-m", "synesthesia.apps.cli", "demo", "--gallery", str(gallery)]
    cmd += ["--data-dir", str(tmp_path / "work"), "--base-port", str(free_base_port())]
    cmd += ["--ui-port", str(ui_port)]
    env = {**os.environ, "TQDM_DISABLE": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
        start_new_session=True,
        preexec_fn=sigint_as_in_a_terminal,
    )
    assert proc.stdout is not None
    try:
        lines = []
        while not any(line.startswith("search page: ") for line in lines):
            line = proc.stdout.readline()
            assert line, "the demo ended before serving the page:\n" + "".join(lines)
            lines.append(line)
        assert f"search page: http://127.0.0.1:{ui_port}/ " in lines[-1]
        with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/api/info", timeout=30) as r:
            assert json.load(r)["count"] == 6
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole group
        assert proc.wait(timeout=60) == 130
        assert "stopping" in proc.stdout.read()
        time.sleep(0.5)
        with pytest.raises(ProcessLookupError):  # no service is left behind
            os.killpg(proc.pid, 0)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_demo_refuses_busy_ports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        argv = ["--gallery", str(tmp_path), "--once", "--base-port", str(port - 3)]
        assert demo_main([*argv, "--data-dir", str(tmp_path / "d")]) == 1
    err = capsys.readouterr().err
    assert re.search(rf"error: port\(s\) .*\b{port}\b.* are in use", err) and "--base-port" in err
    assert not (tmp_path / "d").exists()  # nothing was started


def test_the_main_job_finds_the_dog_picture_by_its_bark(tmp_path: Path) -> None:
    """README's main job as a newcomer runs it (the Debian Tux Paint gallery, the shipped
    weights, the default queries): the held-out dog bark puts a dog picture in its top 3."""
    from synesthesia.apps.gallery import obtain_tuxpaint
    from synesthesia.train.data import cache_dir

    work = tmp_path / "work"
    (work / "cache").mkdir(parents=True)  # the gallery is fetched once per machine, not per test
    (work / "cache" / "tuxpaint-stamps").symlink_to(obtain_tuxpaint(cache_dir() / "gallery"))
    cmd = [sys.executable, "-m", "synesthesia.apps.cli", "demo", "--once", "--data-dir", str(work)]
    cmd += ["--base-port", str(free_base_port())]
    env = {**os.environ, "TQDM_DISABLE": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env, cwd=REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    found = re.search(r"the first dog picture: rank (\d+) of (\d+) pictures", done.stdout)
    assert found, done.stdout[-3000:]
    rank, pictures = int(found[1]), int(found[2])
    assert pictures > 500 and rank <= 3, done.stdout[-3000:]

"""The sample gallery from a Debian package, without the network: a small package laid out like
tuxpaint-stamps-default is built with dpkg-deb and put in the cache, where the demo finds it
instead of running apt-get. Kept: pictures, sound effects and English captions; left out: spoken
descriptions, mirrored pictures, spoken letters/numbers, and sounds/captions without a picture."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from synesthesia.apps import gallery
from synesthesia.apps.gallery import GalleryError, caption_of, obtain_tuxpaint

pytestmark = pytest.mark.integration

CAPTION = "A dog.\nde.utf8=Ein Hund.\nfr.utf8=Un chien.\n"


def build_deb(tmp: Path, cache: Path) -> Path:
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb is not installed")
    pkg = tmp / "pkg"
    stamps = pkg / "usr/share/tuxpaint/stamps"
    files = {
        "animals/dogs/dog.png": b"png",
        "animals/dogs/dog_mirror.png": b"mirrored png",
        "animals/dogs/dog.ogg": b"bark",
        "animals/dogs/dog_desc.ogg": b"spoken 'a dog'",
        "animals/dogs/dog_desc_fr.ogg": b"spoken 'un chien'",
        "animals/dogs/dog.dat": b"settings",
        "animals/lonely.ogg": b"a sound without a picture",
        "clothes/hat.svg": b"<svg/>",
        "clothes/hat.txt": b"A hat.\n",
        "symbols/alphabets/a.png": b"letter",
        "symbols/alphabets/a.ogg": b"spoken letter",
        "symbols/math/one.png": b"number",
    }
    for rel, data in files.items():
        (stamps / rel).parent.mkdir(parents=True, exist_ok=True)
        (stamps / rel).write_bytes(data)
    (stamps / "animals/dogs/dog.txt").write_text(CAPTION)
    (pkg / "DEBIAN").mkdir()
    (pkg / "DEBIAN/control").write_text(
        "Package: tuxpaint-stamps-default\nVersion: 1.0-1\nArchitecture: all\n"
        "Maintainer: test <test@example.org>\nInstalled-Size: 1\nDescription: test stamps\n"
    )
    cache.mkdir(parents=True)
    deb = cache / "tuxpaint-stamps-default_1.0-1_all.deb"
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(pkg), str(deb)], check=True)
    return deb


def test_the_package_becomes_a_gallery(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    build_deb(tmp_path, cache)
    root = obtain_tuxpaint(cache)
    assert root == cache / "tuxpaint-stamps"
    kept = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert kept == [
        ".complete",
        "animals/dogs/dog.ogg",
        "animals/dogs/dog.png",
        "animals/dogs/dog.txt",
    ]
    assert (root / "animals/dogs/dog.txt").read_text() == "A dog."
    assert caption_of(root / "animals/dogs/dog.ogg") == "A dog."
    assert not (cache / "tuxpaint-stamps.partial").exists()
    assert not list(cache.glob("*.deb"))  # removed once extracted
    (root / "animals/dogs/dog.png").write_bytes(b"touched")  # a second call extracts nothing
    assert obtain_tuxpaint(cache) == root
    assert (root / "animals/dogs/dog.png").read_bytes() == b"touched"


def test_without_apt_the_error_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gallery.shutil, "which", lambda name: None)
    with pytest.raises(GalleryError, match=r"apt-get is not available.*--gallery DIR"):
        obtain_tuxpaint(tmp_path / "cache")


def fake_apt(tmp: Path, deb: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An ``apt-get`` on PATH that knows the package only after ``apt-get update``."""
    bin_dir, calls = tmp / "bin", tmp / "apt-calls"
    bin_dir.mkdir()
    script = bin_dir / "apt-get"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {calls}\n'
        f'if [ "$1" = update ]; then touch {tmp}/updated; exit 0; fi\n'
        f'if [ ! -e {tmp}/updated ]; then echo "E: Unable to locate package $2" >&2; exit 100; fi\n'
        f"cp {deb} .\n"
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return calls


def test_apt_get_update_runs_only_as_root_and_when_needed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deb = build_deb(tmp_path, tmp_path / "built")
    calls = fake_apt(tmp_path, deb, monkeypatch)
    monkeypatch.setattr(gallery.os, "geteuid", lambda: 1000)
    with pytest.raises(GalleryError, match=r"Unable to locate package.*sudo apt-get update"):
        obtain_tuxpaint(tmp_path / "user-cache")
    assert calls.read_text() == "download tuxpaint-stamps-default\n"
    monkeypatch.setattr(gallery.os, "geteuid", lambda: 0)
    root = obtain_tuxpaint(tmp_path / "root-cache")
    assert (root / "animals/dogs/dog.png").read_bytes() == b"png"
    assert calls.read_text().splitlines()[1:] == [
        "download tuxpaint-stamps-default",
        "update -qq",
        "download tuxpaint-stamps-default",
    ]

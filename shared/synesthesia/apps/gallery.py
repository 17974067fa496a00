"""The demo's sample gallery: Tux Paint's stamps, obtained once (no gRPC here; indexing a folder
is ``synesthesia.apps.indexing``).

The sample gallery is Debian's ``tuxpaint-stamps-default`` (GPL-2): pictures (.png), sound effects
(.ogg) and captions (.txt, every language; we keep the English first line). ``apt-get download``
fetches the package into a cache folder (no root needed) and ``dpkg-deb --fsys-tarfile`` streams
its files, of which only the pictures, sound effects and captions are kept.

``caption_of`` reads a picture's or sound's caption: the first line of the ``.txt`` beside it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path, PurePosixPath
from typing import IO, cast

PACKAGE = "tuxpaint-stamps-default"
STAMPS = PurePosixPath("usr/share/tuxpaint/stamps")
# Spoken letters and numbers: many clips of speech rather than sounds of things.
SKIPPED = ("symbols/alphabets/", "symbols/math/")
DONE_MARKER = ".complete"


class GalleryError(RuntimeError):
    """The sample gallery could not be obtained; the message says what to do."""


def caption_of(path: Path) -> str:
    """The first non-empty line of ``path``'s sibling .txt (Tux Paint's English caption)."""
    txt = path.with_suffix(".txt")
    if not txt.is_file():
        return ""
    for line in txt.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.strip():
            return line.strip()[:300]
    return ""


GALLERY_HINT = "index your own files instead: synesthesia demo --gallery DIR"


def apt_download(cache: Path, package: str = PACKAGE, hint: str = GALLERY_HINT) -> Path:
    """``apt-get download`` of ``package`` into ``cache`` (no root needed; as root, one
    ``apt-get update`` when the package lists do not know it); the .deb's path. ``hint``: what
    to do instead, for the error message."""
    if shutil.which("apt-get") is None:
        raise GalleryError(
            f"apt-get is not available, so {package} (a Debian package) cannot be downloaded; "
            f"{hint}"
        )

    def download() -> subprocess.CompletedProcess[str]:
        # apt-get prints its own progress line; stderr is kept for the error message.
        return subprocess.run(
            ["apt-get", "download", package], cwd=cache, stderr=subprocess.PIPE, text=True
        )

    done = download()
    unknown = "Unable to locate package" in done.stderr or "candidate" in done.stderr
    if done.returncode != 0 and unknown and os.geteuid() == 0:
        print(f"{package} not found in the package lists; running apt-get update …", flush=True)
        subprocess.run(["apt-get", "update", "-qq"], check=False)
        done = download()
    debs = sorted(cache.glob(f"{package}_*.deb"))
    if done.returncode != 0 or not debs:
        again = "run 'sudo apt-get update' and try again, or " if os.geteuid() != 0 else ""
        raise GalleryError(
            f"could not download {package} with apt-get ({done.stderr.strip()[-300:]}); "
            f"{again}{hint}"
        )
    return debs[-1]


class _Counting:
    """A read-only stream that advances a progress bar by the bytes read."""

    def __init__(self, stream: IO[bytes], bar: object) -> None:
        self.stream, self.bar = stream, bar

    def read(self, n: int = -1) -> bytes:
        data = self.stream.read(n)
        self.bar.update(len(data))  # type: ignore[attr-defined]
        return data


def _wanted(rel: PurePosixPath) -> bool:
    name, text = rel.name, str(rel)
    if text.startswith(SKIPPED):
        return False
    if name.endswith(".png"):
        return not name.endswith("_mirror.png")
    if name.endswith(".ogg"):
        return "_desc" not in name  # spoken descriptions in many languages
    return name.endswith(".txt")


def _extract(deb: Path, dest: Path) -> int:
    """Streams the package's files into ``dest``; returns how many files were kept."""
    from tqdm import tqdm

    size_kib = subprocess.run(
        ["dpkg-deb", "--field", str(deb), "Installed-Size"], capture_output=True, text=True
    ).stdout.strip()
    total = int(size_kib) * 1024 if size_kib.isdigit() else None
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    kept = 0
    with (
        tqdm(total=total, unit="B", unit_scale=True, desc="extracting") as bar,
        tarfile.open(fileobj=cast(IO[bytes], _Counting(proc.stdout, bar)), mode="r|") as tar,
    ):
        for member in tar:
            path = PurePosixPath(member.name.removeprefix("./"))
            if not member.isfile() or STAMPS not in path.parents:
                continue
            rel = path.relative_to(STAMPS)
            if not _wanted(rel):
                continue
            src = tar.extractfile(member)
            assert src is not None
            data = src.read()
            if rel.suffix == ".txt":  # keep the English caption (the first line)
                data = (data.decode("utf-8", "replace").strip().splitlines() or [""])[0].encode()
            out = dest / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(data)
            kept += 1
    if proc.wait() != 0:
        raise GalleryError(f"dpkg-deb could not read {deb}")
    return kept


def _prune(root: Path) -> None:
    """Sounds and captions belong to a picture; drop those without one."""
    for path in list(root.rglob("*")):
        if path.suffix in (".ogg", ".txt") and not path.with_suffix(".png").exists():
            path.unlink()


def obtain_tuxpaint(cache: Path) -> Path:
    """The Tux Paint sample gallery under ``cache`` (downloaded and extracted once)."""
    root = cache / "tuxpaint-stamps"
    if (root / DONE_MARKER).exists():
        return root
    cache.mkdir(parents=True, exist_ok=True)
    debs = sorted(cache.glob(f"{PACKAGE}_*.deb"))
    if debs:
        deb = debs[-1]
    else:
        print(f"downloading the sample gallery: Debian package {PACKAGE} (about 160 MB) …")
        deb = apt_download(cache)
    if shutil.which("dpkg-deb") is None:
        raise GalleryError("dpkg-deb is missing; use: synesthesia demo --gallery DIR")
    partial = cache / "tuxpaint-stamps.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    _extract(deb, partial)
    _prune(partial)
    (partial / DONE_MARKER).write_text(f"{deb.name}\n")
    shutil.rmtree(root, ignore_errors=True)
    partial.rename(root)
    deb.unlink()  # 160 MB no longer needed: the marker says the gallery is complete
    return root

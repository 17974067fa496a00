"""Open Clip Art: Debian's ``openclipart-svg`` and ``openclipart-png`` (public domain): 2,548
drawings of things once symbols, flags, icons and shapes are left aside. Each
picture's title and keywords sit in its SVG's Dublin Core metadata (``dc:title``,
``dc:subject``); the PNG package has the same pictures rendered. Training time only: fetched
once with ``apt-get download`` into the cache (about 155 MB of packages; the SVGs are read for
their metadata and dropped), never by the shipped model.

Titles are noisy (authors' names, Italian words, "Clipart by ... - antenna", "horse#1"), so a
picture's name is the cleaned title if it holds an English WordNet noun, else its first
keyword that is one; a picture with neither is left out. So is every picture whose title,
keywords or folder name an unseen class (``banned``): it would teach that class by
construction."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from synesthesia.train.wordnet import article, noun_senses

PACKAGES = ("openclipart-svg", "openclipart-png")
SVG_ROOT = Path("usr/share/openclipart/svg")
PNG_ROOT = Path("usr/share/openclipart/png")
# Not pictures of things: symbols, flags, map and road signs, UI icons and buttons, shapes,
# gradients and patterns.
SKIPPED = (
    "shapes/", "special/", "signs_and_symbols/", "computer/icons/", "computer/buttons/",
    "computer/folders/", "transportation/aiga-symbols/", "transportation/roadsigns/", "logos/",
    "buttons/",
)  # fmt: skip
# Keywords that say nothing about which thing a picture shows.
GENERIC = {
    "icon", "icons", "clipart", "clip art", "image", "picture", "drawing", "symbol", "people",
    "animal", "animals", "food", "object", "objects", "thing", "color", "colour", "black",
    "white", "outline", "cartoon", "art", "design", "illustration", "remix", "graphic",
    "decoration", "line", "simple", "stylized", "style", "set", "various", "menu", "hash",
}  # fmt: skip
MANIFEST = "manifest.jsonl"
DONE_MARKER = ".complete"


@dataclass(frozen=True)
class ClipArt:
    path: Path  # the rendered PNG
    title: str  # as in the SVG
    keywords: tuple[str, ...]  # lower case, as in the SVG
    folder: str  # e.g. "animals/mammals"


def parse_svg(text: str) -> tuple[str, list[str]]:
    """(title, keywords) of an SVG's first ``dc:title`` and its ``dc:subject`` list."""
    m = re.search(r"<dc:title>([^<]*)</dc:title>", text)
    title = html.unescape(m.group(1)).strip() if m else ""
    sub = re.search(r"<dc:subject>(.*?)</dc:subject>", text, re.S)
    words = re.findall(r"<rdf:li>([^<]*)</rdf:li>", sub.group(1)) if sub else []
    return title, [k for k in (html.unescape(w).strip().lower() for w in words) if k]


def clean_title(title: str) -> str:
    """'Clipart by Nicu Buculei - birthday_cake' -> 'birthday cake'; 'Apple (B and W)' ->
    'apple'; 'horse#1' -> 'horse'; 'Dog 06 Drawn With Straight Lines' -> 'dog drawn with
    straight lines'."""
    t = re.sub(r"^clip\s*art\s+by\s+[^-]*-\s*", "", title, flags=re.I)
    t = re.sub(r"\([^)]*\)", " ", t)
    t = re.sub(r"#\s*\d+|\d+", " ", t).replace("_", " ")
    t = re.sub(r"[^A-Za-z' -]+", " ", t).lower()
    return re.sub(r"\s+", " ", t).strip(" -'")


def _ngrams(text: str, n: int = 4) -> set[str]:
    words = text.split()
    grams = {" ".join(words[i : i + k]) for k in range(1, n + 1) for i in range(len(words))}
    return grams | {g[:-1] for g in grams if g.endswith("s") and len(g) > 3}  # "bears" -> "bear"


def _is_noun(text: str, senses: dict[str, tuple[list[str], int]]) -> bool:
    """Whether ``text`` holds a common English noun (one with a sense tagged in WordNet's
    corpus, so not 'mie' of 'Le mie tigri preferite')."""
    return any(senses.get(g, ([], 0))[1] > 0 and g not in GENERIC for g in _ngrams(text))


def name_of(item: ClipArt, senses: dict[str, tuple[list[str], int]]) -> str | None:
    """The picture's name: the cleaned title if it holds a WordNet noun (an English title),
    else the first keyword that is a noun (``libellula`` by keywords ``insect``); None if
    neither."""
    title = clean_title(item.title)
    if title and len(title.split()) <= 6 and _is_noun(title, senses):
        return title
    for k in item.keywords:
        k = clean_title(k)
        if k and k not in GENERIC and k in senses:
            return k
    return None


def named_like(item: ClipArt, name: str, banned: set[str]) -> bool:
    """Whether the picture's name, keywords or folder holds a ``banned`` name."""
    fields = [name, item.title, *item.keywords, *item.folder.split("/")]
    grams: set[str] = set()
    for text in map(clean_title, fields):
        grams |= _ngrams(text) | _ngrams(text.replace("-", " "))
    return bool(grams & banned)


def captions(name: str, item: ClipArt, senses: dict[str, tuple[list[str], int]]) -> list[str]:
    """A literal caption: the name as a drawing, with up to four more keywords that are nouns
    ('a drawing of a fawn: deer, forest, young.')."""
    more = [
        k for k in dict.fromkeys(clean_title(k) for k in item.keywords)
        if k and k != name and k not in GENERIC and k in senses and k not in name
    ][:4]  # fmt: skip
    first = f"a drawing of {article(name)}"
    return [f"{first}: {', '.join(more)}." if more else f"{first}."]


def pictures(root: Path) -> list[ClipArt]:
    """The pictures of an obtained collection (``obtain``), in manifest order."""
    out = []
    for line in (root / MANIFEST).read_text().splitlines():
        row = json.loads(line)
        out.append(
            ClipArt(root / row["png"], row["title"], tuple(row["keywords"]), row["folder"])
        )  # fmt: skip
    return out


def training_pictures(
    root: Path, banned: set[str]
) -> list[tuple[ClipArt, str, list[str]]]:  # fmt: skip
    """(picture, name, captions) of every usable picture: named (``name_of``) and not named
    like an unseen class."""
    senses = noun_senses()
    out = []
    for item in pictures(root):
        name = name_of(item, senses)
        if name is None or named_like(item, name, banned):
            continue
        out.append((item, name, captions(name, item, senses)))
    return out


def obtain(cache: Path) -> Path:
    """The collection under ``cache/openclipart`` (downloaded and extracted once): the kept
    pictures' PNGs and ``manifest.jsonl`` (png, title, keywords, folder)."""
    root = cache / "openclipart"
    if (root / DONE_MARKER).exists():
        return root
    cache.mkdir(parents=True, exist_ok=True)
    if shutil.which("dpkg-deb") is None:
        raise RuntimeError("dpkg-deb is needed to unpack the Open Clip Art packages")
    from synesthesia.apps.gallery import apt_download

    debs = {}
    for package in PACKAGES:
        found = sorted(cache.glob(f"{package}_*.deb"))
        hint = "or train without them (image.clipart_share 0)"
        debs[package] = found[-1] if found else apt_download(cache, package, hint)
    partial = cache / "openclipart.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    rows = []
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        for package in PACKAGES:
            subprocess.run(["dpkg-deb", "-x", str(debs[package]), tmp], check=True)
        svg_root, png_root = Path(tmp) / SVG_ROOT, Path(tmp) / PNG_ROOT
        for svg in sorted(svg_root.rglob("*.svg")):
            rel = svg.relative_to(svg_root)
            png = png_root / rel.with_suffix(".png")
            if rel.as_posix().startswith(SKIPPED) or not png.is_file():
                continue
            if svg.is_symlink() or png.is_symlink():  # the same picture under another folder
                continue
            title, keywords = parse_svg(svg.read_text(encoding="utf-8", errors="replace"))
            dest = partial / "png" / rel.with_suffix(".png")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(png), dest)
            rows.append({
                "png": dest.relative_to(partial).as_posix(), "title": title,
                "keywords": keywords, "folder": rel.parent.as_posix(),
            })  # fmt: skip
    (partial / MANIFEST).write_text("".join(json.dumps(r) + "\n" for r in rows))
    (partial / DONE_MARKER).write_text(" ".join(d.name for d in debs.values()) + "\n")
    shutil.rmtree(root, ignore_errors=True)
    partial.rename(root)
    for deb in debs.values():
        deb.unlink()
    return root

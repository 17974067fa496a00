"""Open Clip Art as training pictures, without the network: two small packages laid out like
Debian's openclipart-svg / openclipart-png are built with dpkg-deb and put in the cache, where
``clipart.obtain`` finds them instead of running apt-get. WordNet comes from a tiny fixture."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from synesthesia.models.minilm.config import ImageCfg
from synesthesia.train import clipart

# tagged senses (the 4th field from the end before the offsets) mark common nouns
INDEX = """\
  1 This software and database is being provided to you, the LICENSEE, by
fawn n 1 1 @ 1 1 02419796
deer n 1 1 @ 1 1 02430045
forest n 1 1 @ 1 1 09284015
lion n 1 1 @ 1 1 02129165
dog n 1 1 @ 1 1 02084071
insect n 1 1 @ 1 1 02159955
mie n 1 1 @ 1 0 09999999
"""


def svg(title: str, keywords: list[str]) -> bytes:
    items = "".join(f"<rdf:li>{k}</rdf:li>" for k in keywords)
    return (
        '<svg xmlns:dc="http://purl.org/dc/elements/1.1/"><metadata><rdf:RDF><cc:Work>'
        f"<dc:title>{title}</dc:title><dc:subject><rdf:Bag>{items}</rdf:Bag></dc:subject>"
        "<cc:license><cc:Agent><dc:title>Public Domain</dc:title></cc:Agent></cc:license>"
        "</cc:Work></rdf:RDF></metadata></svg>"
    ).encode()


def png(colour: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGBA", (40, 30), (*colour, 255)).save(buf, "PNG")
    return buf.getvalue()


PICTURES = {  # folder/name: (title, keywords, colour)
    "animals/mammals/fawn_01": ("Fawn", ["deer", "forest", "mammal", "hash(0x8a)"], (200, 150, 90)),
    "animals/mammals/leo": ("Leo", ["lion", "mammal"], (220, 180, 40)),  # named like "lion"
    "animals/bugs/libellula": ("libellula", ["insect"], (10, 100, 200)),  # by its keyword
    "animals/mammals/tigri": ("Le mie tigri", ["dog"], (9, 9, 9)),  # 'mie' is no common noun
    "animals/mammals/Dog_2": ("Clipart by Someone - dog#2 (B and W)", [], (0, 0, 0)),
    "unsorted/various": ("Various Cliparts", [""], (1, 2, 3)),  # nothing to name it by
    "computer/icons/dog_icon": ("Dog", ["dog"], (5, 5, 5)),  # an icon folder: left out
}  # fmt: skip


def build_debs(tmp: Path, cache: Path) -> None:
    if shutil.which("dpkg-deb") is None and os.environ.get("CI") != "true":
        pytest.skip("dpkg-deb is not installed")
    cache.mkdir(parents=True)
    for package, root, ext in (
        ("openclipart-svg", clipart.SVG_ROOT, ".svg"),
        ("openclipart-png", clipart.PNG_ROOT, ".png"),
    ):
        pkg = tmp / package
        for rel, (title, keywords, colour) in PICTURES.items():
            path = pkg / root / (rel + ext)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(svg(title, keywords) if ext == ".svg" else png(colour))
        # the package's duplicates are symbolic links to a picture in another folder
        (pkg / root / ("animals/leo_again" + ext)).symlink_to("mammals/leo" + ext)
        (pkg / "DEBIAN").mkdir()
        (pkg / "DEBIAN/control").write_text(
            f"Package: {package}\nVersion: 1:0.18-1\nArchitecture: all\n"
            "Maintainer: test <test@example.org>\nDescription: test clip art\n"
        )
        deb = cache / f"{package}_0.18-1_all.deb"
        subprocess.run(
            ["dpkg-deb", "--build", "--root-owner-group", str(pkg), str(deb)],
            check=True, capture_output=True,
        )  # fmt: skip


@pytest.fixture
def collection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    wn = tmp_path / "wordnet"
    wn.mkdir()
    (wn / "index.noun").write_text(INDEX)
    monkeypatch.setenv("SYNESTHESIA_WORDNET", str(wn))
    cache = tmp_path / "cache"
    build_debs(tmp_path, cache)
    return clipart.obtain(cache)


def test_the_packages_become_a_collection_once(collection: Path) -> None:
    rows = [json.loads(x) for x in (collection / clipart.MANIFEST).read_text().splitlines()]
    by_png = {r["png"]: r for r in rows}
    assert sorted(by_png) == sorted(
        f"png/{rel}.png" for rel in PICTURES if not rel.startswith("computer/icons")
    )  # no icon, no symbolic link
    assert by_png["png/animals/mammals/fawn_01.png"] == {
        "png": "png/animals/mammals/fawn_01.png", "title": "Fawn",
        "keywords": ["deer", "forest", "mammal", "hash(0x8a)"], "folder": "animals/mammals",
    }  # fmt: skip
    cache = collection.parent
    assert not list(cache.glob("*.deb")) and not (cache / "openclipart.partial").exists()
    (collection / "png/animals/mammals/leo.png").write_bytes(b"touched")
    assert clipart.obtain(cache) == collection  # a second call unpacks nothing
    assert (collection / "png/animals/mammals/leo.png").read_bytes() == b"touched"


def test_names_captions_and_the_unseen_left_out(collection: Path) -> None:
    got = {
        it.path.relative_to(collection).as_posix(): (name, caps)
        for it, name, caps in clipart.training_pictures(collection, banned={"lion"})
    }
    assert got == {
        "png/animals/mammals/fawn_01.png": ("fawn", ["a drawing of a fawn: deer, forest."]),
        "png/animals/bugs/libellula.png": ("insect", ["a drawing of an insect."]),
        "png/animals/mammals/tigri.png": ("dog", ["a drawing of a dog."]),
        "png/animals/mammals/Dog_2.png": ("dog", ["a drawing of a dog."]),
    }
    # a banned keyword or folder name is enough to leave a picture out; Leo, whose title is no
    # noun, is named by its first keyword that is one
    left = clipart.training_pictures(collection, banned={"bugs", "deer"})
    assert sorted((it.title, name) for it, name, _ in left) == [
        ("Clipart by Someone - dog#2 (B and W)", "dog"), ("Le mie tigri", "dog"), ("Leo", "lion"),
    ]  # fmt: skip


def test_clean_title() -> None:
    assert clipart.clean_title("Clipart by Nicu Buculei - birthday_cake") == "birthday cake"
    assert clipart.clean_title("Apple (B and W)") == "apple"
    assert clipart.clean_title("horse#1") == "horse"
    assert clipart.clean_title("Dog 06 Drawn With Lines") == "dog drawn with lines"
    assert clipart.clean_title("") == ""


def test_the_pictures_join_the_bank_as_drawings(
    collection: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from synesthesia.train import sets

    monkeypatch.setenv("SYNESTHESIA_CACHE", str(collection.parent))
    classes = {"dog": ["dog", "puppy"], "cat": ["cat"]}
    captions: dict[str, list[str]] = {}
    cfg = ImageCfg()
    px, lab = sets.clipart_set(classes, captions, {"puppy": "dog"}, {"lion"}, cfg)
    keys = list(classes)
    assert keys == ["dog", "cat", "clipart:insect", "clipart:fawn"]  # in the manifest's order
    assert sorted(keys[i] for i in lab) == ["clipart:fawn", "clipart:insect", "dog", "dog"]
    assert captions["dog"] == ["a drawing of a dog."]  # the same caption once
    assert all(p.shape == (cfg.image_size, cfg.image_size, 3) and p.dtype == np.uint8 for p in px)
    fawn = px[lab.index(keys.index("clipart:fawn"))]
    assert np.abs(fawn.reshape(-1, 3).mean(0) - (200, 150, 90)).max() <= 2  # its own pixels

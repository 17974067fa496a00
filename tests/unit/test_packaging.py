"""Every package folder is listed in pyproject (the list is explicit because of two roots), and
the services never import training code."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_every_package_folder_is_listed() -> None:
    listed = set(
        tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = set()
    for root, prefix in (
        (REPO / "shared" / "synesthesia", "synesthesia"),
        (REPO / "services", "synesthesia.services"),
        (REPO / "protos", "synesthesia.protos"),
    ):
        for init in root.rglob("__init__.py"):
            rel = init.parent.relative_to(root).parts
            if "__pycache__" not in rel:
                found.add(".".join((prefix, *rel)))
    assert found <= listed, f"add to pyproject packages: {sorted(found - listed)}"
    assert listed <= found, f"listed but missing: {sorted(listed - found)}"


def test_services_do_not_import_training_code() -> None:
    code = (
        "import sys, synesthesia.services.encoder.app, synesthesia.apps.cli, synesthesia.client\n"
        "bad = [m for m in sys.modules if m.startswith('synesthesia.train')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_the_wheel_ships_the_protos_the_weights_and_the_page(tmp_path: Path) -> None:
    """Built as a user would (`pip wheel .`), without dependencies."""
    import zipfile

    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("synesthesia-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for proto in (REPO / "protos" / "synesthesia" / "v1").glob("*.proto"):
        assert f"synesthesia/protos/synesthesia/v1/{proto.name}" in names
    assert "synesthesia/protos/buf.yaml" in names
    assert "synesthesia/weights/synesthesia-minilm.safetensors" in names
    assert "synesthesia/apps/ui/static/index.html" in names
    assert not any(n.startswith(("tests/", "bench/")) for n in names)


def test_the_protos_are_found_from_the_package() -> None:
    import synesthesia.protos as protos

    assert {p.name for p in protos.files()} == {"common.proto", "encoder.proto", "search.proto"}
    assert (protos.root() / "buf.yaml").is_file()

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

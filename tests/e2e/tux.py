"""A small Tux Paint gallery (pictures, sounds, English captions) built from ../shared/data, and
the three encoders + the search service running in-process on loopback (port 0)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from synesthesia.modality import Modality
from synesthesia.services.search.app import SearchApp
from synesthesia.services.search.settings import SearchSettings

from tests.servers import running
from tests.services.conftest import start_encoders

LABELS = (
    "dog", "cow", "frog", "rooster", "duck", "horse", "pig", "sheep", "owl", "blackcat",
    "elephant", "lion",
)  # fmt: skip


def build_gallery(data_dir: Path, dest: Path, labels: tuple[str, ...] = LABELS) -> Path:
    """``dest`` laid out like the Debian package: <category>/<label>.png, .ogg and .txt."""
    root = data_dir / "tuxpaint_stamps"
    rows = [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines()]
    picked = {r["label"]: r for r in rows if r["label"] in labels}
    assert set(picked) == set(labels), set(labels) - set(picked)
    for r in picked.values():
        for key in ("image", "audio"):
            (dest / r[key]).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root / r[key], dest / r[key])
        (dest / r["image"]).with_suffix(".txt").write_text(r["caption"] + "\n")
    return dest


@contextmanager
def search_stack(
    index_dir: Path,
    model: str = "synesthesia-minilm",
    encoders: dict[Modality, str] | None = None,
) -> Iterator[str]:
    """Yields the search service's target; its media queries go to real encoder servers (whose
    targets go into ``encoders`` when given)."""
    with ExitStack() as stack:
        targets = start_encoders(stack, model=model)
        if encoders is not None:
            encoders.update(targets)
        settings = SearchSettings(
            port=0,
            data_dir=index_dir,
            text_encoder=targets[Modality.TEXT],
            image_encoder=targets[Modality.IMAGE],
            audio_encoder=targets[Modality.AUDIO],
        )
        app = SearchApp(settings)

        class Stopper:
            async def close(self) -> None:
                await app.stop(0)

        async def start():  # type: ignore[no-untyped-def]
            return await app.start(), Stopper()

        server, _ = stack.enter_context(running(start))
        yield f"127.0.0.1:{server.port}"

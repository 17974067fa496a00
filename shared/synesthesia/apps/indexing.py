"""A folder of pictures, sounds and texts into a collection: the one way ``synesthesia index`` and
the demo index files.

Every picture and sound is an item. A ``.txt`` beside one of them with the same name is its
caption: the first non-empty line goes into that item's metadata, and the ``.txt`` is not an item
of its own unless ``caption_items`` asks for it. Any other ``.txt`` is a text item. Every item
carries ``path`` (relative to the folder), ``name``, ``kind`` (picture, sound, caption, text) and
``caption``, so results print and show nicely.

Ids are content hashes (identical files are stored once); ids already stored are skipped, so an
interrupted run resumes; files that cannot be read or that the encoders refuse are skipped and
named by their path in the result, and the rest of the folder is indexed. Links that lead out of
the folder are not followed (named as skipped too).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from synesthesia.apps.gallery import caption_of
from synesthesia.client import Item, SearchClient
from synesthesia.errors import (
    DeadlineExceeded,
    NotFound,
    PermissionDenied,
    SynesthesiaError,
    Unauthenticated,
    Unavailable,
)
from synesthesia.modality import Modality

EXTENSIONS = {
    **dict.fromkeys((".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp"), Modality.IMAGE),
    **dict.fromkeys((".wav", ".flac", ".ogg", ".mp3"), Modality.AUDIO),
    ".txt": Modality.TEXT,
}
KIND = {Modality.IMAGE: "picture", Modality.AUDIO: "sound", Modality.TEXT: "text"}


def content_id(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:24]


# What the whole run cannot get past (the service, the credentials, the collection): not a file's
# fault, so it stops the run instead of skipping every file.
SYSTEMIC = (Unavailable, Unauthenticated, PermissionDenied, NotFound, DeadlineExceeded)
_ITEM_PREFIX = re.compile(r"^item \d+( \(id '[^']*'\))?: ")


def inside(root: Path, path: Path) -> bool:
    """``path`` (links resolved) lies inside ``root``."""
    try:
        return path.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError):
        return False


def walk(root: Path, outside: list[str] | None = None) -> Iterator[tuple[Path, Modality]]:
    """Every picture, sound and .txt file under ``root``, in a stable order; a link that leads
    out of ``root`` is left out (and its path added to ``outside``)."""
    for path in sorted(root.rglob("*")):
        modality = EXTENSIONS.get(path.suffix.lower())
        if modality is None or not path.is_file():
            continue
        if not inside(root, path):
            if outside is not None:
                outside.append(f"{path.relative_to(root)}: a link to outside the folder")
            continue
        yield path, modality


def reason(err: SynesthesiaError) -> str:
    """The service's message without the 'item 0 (id '<hash>'): ' it names the item by."""
    return _ITEM_PREFIX.sub("", err.message or err.code)


def is_caption(path: Path) -> bool:
    """A .txt with a picture or sound of the same name beside it."""
    if path.suffix.lower() != ".txt":
        return False
    return any(
        p != path and p.stem == path.stem and EXTENSIONS.get(p.suffix.lower()) is not Modality.TEXT
        for p in path.parent.glob(f"{path.stem}.*")
    )


def _caption(path: Path, root: Path) -> str:
    """The sibling caption, unless it is a link out of ``root`` or cannot be read."""
    if not inside(root, path.with_suffix(".txt")):
        return ""
    try:
        return caption_of(path)
    except OSError:
        return ""


def folder_item(path: Path, modality: Modality, root: Path, data: bytes) -> Item:
    meta = {"path": str(path.relative_to(root)), "name": path.stem}
    if modality is not Modality.TEXT:
        meta |= {"kind": KIND[modality], "caption": _caption(path, root)}
        return Item(content_id(data), data=data, modality=modality, metadata=meta)
    text = data.decode("utf-8", errors="replace").strip()
    meta |= {"kind": "caption" if is_caption(path) else "text", "caption": text[:300]}
    return Item(content_id(data), text=text, metadata=meta)


def _read(path: Path, root: Path, skipped: list[str]) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError as exc:
        skipped.append(f"{path.relative_to(root)}: cannot be read ({exc.strerror})")
        return None


@dataclass
class Indexed:
    added: int
    already: int  # items that were stored before
    rejected: list[str] = field(default_factory=list)  # "path: the service's reason"


def _upsert(
    client: SearchClient, collection: str, items: list[Item], timeout: float
) -> tuple[int, list[str]]:
    """One batch; when the service refuses it (a bad file) or an encoder cannot finish it in
    time (a busy machine), item by item, skipping the refused (ids are content hashes, so a
    retry stores nothing twice)."""
    try:
        return len(client.upsert(collection, items, batch_size=len(items), timeout=timeout)), []
    except SYSTEMIC as err:
        if len(items) == 1 or not isinstance(err, DeadlineExceeded):
            raise
    except SynesthesiaError as err:  # this file (or one of the batch) is refused
        if len(items) == 1:
            return 0, [f"{items[0].metadata['path']}: {reason(err)}"]
    added, rejected = 0, list[str]()
    for item in items:
        n, bad = _upsert(client, collection, [item], timeout)
        added, rejected = added + n, rejected + bad
    return added, rejected


def index_folder(
    client: SearchClient,
    root: Path,
    collection: str,
    *,
    caption_items: bool = False,
    batch: int = 16,
    progress: bool = True,
    timeout: float = 600.0,
) -> Indexed:
    """Indexes ``root`` into ``collection`` (created when missing); see the module's doc."""
    from tqdm import tqdm

    client.ensure_collection(collection)
    skipped: list[str] = []
    files: dict[str, tuple[Path, Modality]] = {}
    for path, modality in walk(root, skipped):
        if modality is Modality.TEXT and not caption_items and is_caption(path):
            continue
        data = _read(path, root, skipped)
        if data is not None:
            files.setdefault(content_id(data), (path, modality))
    stored = {i.id for i in client.get(collection, list(files))}
    todo = [files[i] for i in files if i not in stored]
    result = Indexed(0, len(stored), skipped)
    with tqdm(
        total=len(todo), unit="file", desc=f"indexing into {collection!r}", disable=not progress
    ) as bar:
        for line in skipped:
            bar.write(f"skipped {line}")
        for start in range(0, len(todo), batch):
            part = todo[start : start + batch]
            unread: list[str] = []
            items = [
                folder_item(p, m, root, data)
                for p, m in part
                if (data := _read(p, root, unread)) is not None
            ]
            added, rejected = _upsert(client, collection, items, timeout) if items else (0, [])
            rejected = unread + rejected
            result.added += added
            result.rejected += rejected
            for line in rejected:
                bar.write(f"skipped {line}")
            bar.update(len(part))
    return result

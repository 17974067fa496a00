"""Loaders for the real data beside the repository (``../shared/data``), honouring the fixed
evaluation splits. Decoded media are cached under ``~/.cache/synesthesia`` (outside git)."""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from synesthesia.media.audio import decode_audio
from synesthesia.media.image import to_rgb

CIFAR_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
# Tux Paint triples never trained on (a picture + sound pair the model has not seen). The dog is
# here because a dog-bark clip used for the bark->photo check must be held out.
TUX_HELDOUT = ("dog", "blackcat", "rooster", "horse", "cow", "frog")


def data_root() -> Path:
    env = os.environ.get("SYNESTHESIA_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3].parent / "shared" / "data"


def cache_dir() -> Path:
    root = Path(os.environ.get("SYNESTHESIA_CACHE", Path.home() / ".cache" / "synesthesia"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def _read_jsonl(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# -- CIFAR-10 -----------------------------------------------------------------------------------
def load_cifar(split: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 [N, 32, 32, 3] and int64 labels for ``train`` or ``test``; decoded once, cached."""
    cached = cache_dir() / f"cifar10_{split}.npz"
    if cached.is_file():
        z = np.load(cached)
        return z["x"], z["y"]
    tar = data_root() / "cifar10" / "cifar10_jpg_train_test.tar.gz"
    xs: dict[str, list[np.ndarray]] = {"train": [], "test": []}
    ys: dict[str, list[int]] = {"train": [], "test": []}
    with tarfile.open(tar) as tf:
        for m in tf:
            parts = m.name.split("/")
            if not m.isfile() or len(parts) < 3 or parts[-3] not in xs:
                continue
            f = tf.extractfile(m)
            assert f is not None
            img = Image.open(io.BytesIO(f.read())).convert("RGB")
            xs[parts[-3]].append(np.asarray(img, dtype=np.uint8))
            ys[parts[-3]].append(CIFAR_CLASSES.index(parts[-2]))
    for s in xs:
        tmp = cache_dir() / f"cifar10_{s}.tmp.npz"
        np.savez(tmp, x=np.stack(xs[s]), y=np.asarray(ys[s], dtype=np.int64))
        tmp.replace(cache_dir() / f"cifar10_{s}.npz")
    return np.stack(xs[split]), np.asarray(ys[split], dtype=np.int64)


# -- audio ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Clip:
    path: Path
    label: str  # class name (ESC) or Tux Paint label; the text bank key
    source: str  # esc10 | esc50 | opensfx | tux | librosa
    caption: str = ""
    recording: str = ""  # ESC recording id (middle number of the file name)


def _recording(name: str) -> str:
    m = re.match(r"(\d+)-(\d+)-", Path(name).name)
    return m.group(2) if m else ""


def esc10_label(folder: str) -> str:
    """'001 - Dog bark' -> 'dog bark'."""
    return folder.split(" - ", 1)[1].lower()


def _split(name: str) -> set[str]:
    return set((data_root() / "splits" / name).read_text().split("\n")) - {""}


def esc10_clips(split: str) -> list[Clip]:
    names = sorted(_split(f"esc10.{split}.txt"))
    root = data_root() / "esc10"
    return [
        Clip(root / n, esc10_label(n.split("/")[0]), "esc10", recording=_recording(n))
        for n in names
    ]


def esc50_clips(split: str) -> list[Clip]:
    names = _split(f"esc50_subset_16k.{split}.txt")
    root = data_root() / "esc50_subset_16k"
    out = []
    for row in _read_jsonl(root / "manifest.jsonl"):
        name = str(row["audio"])
        if name in names:
            label = str(row["label"]).replace("_", " ")
            out.append(Clip(root / name, label, "esc50", recording=_recording(name)))
    return sorted(out, key=lambda c: c.path)


def eval_recordings() -> set[str]:
    return {c.recording for c in esc10_clips("eval") + esc50_clips("eval")}


def opensfx_clips() -> list[Clip]:
    root = data_root() / "openttd_opensfx"
    out = []
    for row in _read_jsonl(root / "manifest.jsonl"):
        if float(str(row["audio_dur"])) < 0.25:
            continue
        cap = re.sub(r"^(Toyland|Tropical|Lumber mill):\s*", "", str(row["caption"]))
        cap = re.sub(r"\s*\(\d\)$", "", cap)
        out.append(Clip(root / str(row["audio"]), cap.lower(), "opensfx", caption=cap))
    return out


@dataclass(frozen=True)
class TuxItem:
    label: str
    caption: str
    image: Path
    audio: Path | None


def tux_items(held_out: bool | None = False) -> list[TuxItem]:
    """Tux Paint triples (+ images-only pictures). ``held_out``: False = training items,
    True = the held-out triples, None = all."""
    root = data_root() / "tuxpaint_stamps"
    out = []
    for manifest in ("manifest.jsonl", "manifest_images_only.jsonl"):
        for row in _read_jsonl(root / manifest):
            label = str(row["label"])
            is_held = manifest == "manifest.jsonl" and label in TUX_HELDOUT
            if held_out is not None and is_held != held_out:
                continue
            audio = root / str(row["audio"]) if row.get("audio") else None
            out.append(TuxItem(label, str(row["caption"]), root / str(row["image"]), audio))
    return out


def gallery_pictures() -> list[TuxItem]:
    """The captioned pictures of Debian's ``tuxpaint-stamps-default`` (the demo's sample gallery,
    obtained with ``apt-get download`` once) that are not among the Tux Paint triples above:
    more drawings of more kinds of things. The held-out triples' pictures (by file name) are
    never included. ``images_only/`` pictures of ../shared sit under another path there, so
    they come again from here: the shipped image tower drew them about twice as often as the
    other drawings (kept so that the shipped weights reproduce; the model card says so)."""
    from synesthesia.apps.gallery import caption_of, obtain_tuxpaint

    root = obtain_tuxpaint(cache_dir() / "gallery")
    shared = data_root() / "tuxpaint_stamps"
    known = {t.image.relative_to(shared).as_posix() for t in tux_items(held_out=None)}
    held = {t.image.name for t in tux_items(held_out=True)}
    out = []
    for png in sorted(root.rglob("*.png")):
        rel = png.relative_to(root).as_posix()
        caption = caption_of(png)
        if rel in known or png.name in held or not caption:
            continue
        out.append(TuxItem(png.stem, caption, png, None))
    return out


def train_audio_clips() -> list[Clip]:
    """Every training clip: ESC-10 folds 1-4, the ESC-50 train list, OpenSFX, Tux Paint sounds
    (held-out triples excluded), minus any clip sharing a recording with an eval clip."""
    banned = eval_recordings()
    esc = [c for c in esc10_clips("train") + esc50_clips("train") if c.recording not in banned]
    seen: set[str] = set()
    unique = []
    for c in esc:  # ESC-10 clips also appear in the ESC-50 subset
        key = c.path.stem.rsplit("-", 1)[0] if c.source == "esc50" else c.path.stem
        if key not in seen:
            seen.add(key)
            unique.append(c)
    tux = [Clip(t.audio, t.label, "tux", caption=t.caption) for t in tux_items(False) if t.audio]
    return unique + opensfx_clips() + tux


def load_wave(path: Path, sample_rate: int) -> np.ndarray:
    """Decode like the audio service does (mono, resampled), cached as float32."""
    key = re.sub(r"[^A-Za-z0-9]+", "_", str(path.relative_to(data_root())))
    cached = cache_dir() / "audio" / f"{key}.{sample_rate}.npy"
    if cached.is_file():
        return np.load(cached)
    wave = decode_audio(path.read_bytes(), sample_rate, max_seconds=600.0)
    cached.parent.mkdir(parents=True, exist_ok=True)
    np.save(cached, wave)
    return wave


def load_picture(path: Path) -> Image.Image:
    return to_rgb(Image.open(path))

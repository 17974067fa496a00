"""Class names, prompt templates and the frozen text-embedding bank the towers are bound to."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from synesthesia.models.minilm.embedder import load_tokenizer
from synesthesia.models.minilm.model import SynesthesiaMiniLM
from synesthesia.train.data import cache_dir

# A few neutral templates appear on both sides so that a sound and a picture of one thing meet.
NEUTRAL = ("a {}.", "{}", "a {} .", "this is a {}.")
IMAGE_TEMPLATES = (
    *NEUTRAL,
    "a photo of a {}.", "a blurry photo of a {}.", "a low resolution photo of a {}.",
    "a picture of a {}.", "a close-up photo of a {}.", "a photo of the small {}.",
    "a bright photo of a {}.", "a dark photo of the {}.", "a cropped photo of a {}.",
    "a drawing of a {}.", "an image of a {}.", "a photo of my {}.", "a pixelated photo of a {}.",
    "a jpeg photo of a {}.", "a good photo of the {}.", "art of a {}.",
)  # fmt: skip
AUDIO_TEMPLATES = (
    *NEUTRAL,
    "the sound of a {}.", "a recording of a {}.", "a {} can be heard.", "the noise of a {}.",
    "an audio clip of a {}.", "listen to the {}.", "a sound of {}.", "the sound a {} makes.",
    "a field recording of a {}.", "a short clip of {} sounds.", "I can hear a {}.",
    "a loud {}.", "a quiet {}.", "sound effect: {}.",
)  # fmt: skip

# ESC-10 folder labels and their ESC-50 class; training merges them into one class.
ESC10_TO_ESC50 = {
    "dog bark": "dog", "rain": "rain", "sea waves": "sea waves", "baby cry": "crying baby",
    "clock tick": "clock tick", "person sneeze": "sneezing", "helicopter": "helicopter",
    "chainsaw": "chainsaw", "rooster": "rooster", "fire crackling": "crackling fire",
}  # fmt: skip


# Extra descriptions of some sound classes (what the sound is, and what makes it), used in
# training texts only; zero-shot evaluation prompts use the bare class names.
SOUND_DESCRIPTIONS = {
    "dog": ["dog barking"], "cat": ["cat meowing"], "rooster": ["rooster, a bird"],
    "hen": ["hen, a bird"], "crow": ["crow, a bird"], "chirping birds": ["birds chirping"],
    "frog": ["frog croaking"], "car horn": ["car horn, a car honking"],
    "airplane": ["airplane flying"], "horse": ["horse neighing"], "cow": ["cow mooing"],
    "sheep": ["sheep bleating"], "pig": ["pig oinking"], "insects": ["insects buzzing"],
}  # fmt: skip

# What a sound class looks like, where the picture class has another name (training only; a
# sound class whose own name is a picture class maps to itself).
PICTURE_OF = {
    "dog bark": "dog", "rooster": "bird", "hen": "bird", "crow": "bird", "chirping birds": "bird",
    "bird": "bird", "car horn": "automobile", "modern car horn": "automobile",
    "ship horn": "ship", "ferry horn": "ship", "propeller plane start": "airplane",
    "propeller plane take off": "airplane", "early jet take off": "airplane",
    "modern jet take off": "airplane", "mach 1+ jet take off": "airplane",
    "jet take off": "airplane", "truck/old bus start, pull away": "truck",
    "truck/old bus start, pull away with horn": "truck", "comedy truck start": "truck",
}  # fmt: skip


def caption_name(caption: str) -> str:
    """'A great blue heron.' -> 'great blue heron'."""
    name = caption.strip().rstrip(".").lower()
    return re.sub(r"^(a|an|the)\s+", "", name)


@dataclass
class ClassBank:
    """K classes; class k owns rows ``spans[k]`` of ``emb`` (unit text vectors)."""

    keys: list[str]
    emb: torch.Tensor  # [T, D]
    owner: torch.Tensor  # [T] class index of each row
    texts: list[str]

    def prototypes(self) -> torch.Tensor:
        """[K, D]: the normalised mean of each class's prompt vectors (zero-shot classifier)."""
        k = len(self.keys)
        sums = torch.zeros(k, self.emb.shape[1]).index_add_(0, self.owner, self.emb)
        return torch.nn.functional.normalize(sums, dim=-1)

    def sample(self, gen: torch.Generator) -> torch.Tensor:
        """[K, D]: one random prompt vector per class (fresh every step)."""
        counts = torch.bincount(self.owner, minlength=len(self.keys))
        starts = torch.cumsum(counts, 0) - counts  # rows of a class are contiguous
        offset = (torch.rand(len(counts), generator=gen) * counts).long().clamp(max=counts - 1)
        return self.emb[starts + offset]


@torch.inference_mode()
def embed_texts(model: SynesthesiaMiniLM, texts: Sequence[str], batch: int = 128) -> torch.Tensor:
    """MiniLM sentence embeddings (the model's own, untouched ``encode_text``), cached on disk:
    per list, and per text (``text/store.npz``, so that banks sharing most of their texts only
    embed the new ones)."""
    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    cached = cache_dir() / "text" / f"{digest}.npy"
    if cached.is_file():
        return torch.from_numpy(np.load(cached))
    cached.parent.mkdir(parents=True, exist_ok=True)
    store_path = cached.parent / "store.npz"
    store: dict[str, np.ndarray] = {}
    if store_path.is_file():
        z = np.load(store_path)
        store = dict(zip(z["texts"].tolist(), z["emb"], strict=True))
    missing = sorted({t for t in texts if t not in store}, key=len)  # similar lengths batch well
    tok = load_tokenizer(model.cfg.text.max_tokens)
    for i in range(0, len(missing), batch):
        chunk = missing[i : i + batch]
        encs = tok.encode_batch(chunk)
        n = max(len(e.ids) for e in encs)
        ids = torch.zeros(len(encs), n, dtype=torch.long)
        valid = torch.zeros(len(encs), n, dtype=torch.bool)
        for j, e in enumerate(encs):
            ids[j, : len(e.ids)] = torch.tensor(e.ids)
            valid[j, : len(e.ids)] = True
        store.update(zip(chunk, model.encode_text(ids, valid).numpy(), strict=True))
    if missing:
        tmp = store_path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, texts=np.asarray(list(store)), emb=np.stack(list(store.values())))
        tmp.replace(store_path)
    emb = np.stack([store[t] for t in texts]) if texts else np.zeros((0, model.cfg.dim), "f4")
    np.save(cached, emb)
    return torch.from_numpy(emb)


def build_bank(
    model: SynesthesiaMiniLM,
    classes: dict[str, list[str]],
    templates: Sequence[str],
    captions: dict[str, list[str]] | None = None,
) -> ClassBank:
    """``classes``: key -> names (templated); ``captions``: key -> extra literal texts."""
    keys = list(classes)
    texts, owner = [], []
    for k, key in enumerate(keys):
        lines = [t.format(n) for n in classes[key] for t in templates]
        lines += (captions or {}).get(key, [])
        lines = list(dict.fromkeys(lines))
        texts += lines
        owner += [k] * len(lines)
    emb = embed_texts(model, texts)
    return ClassBank(keys, emb, torch.tensor(owner, dtype=torch.long), texts)

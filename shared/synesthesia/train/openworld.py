"""Open-world evaluation (issue 18): real photos and sounds of things the model never trained on.

- ImageNet sample, ``eval`` split (374 photos, one per class, none of whose classes is trained
  on): photo -> label zero-shot top-1 / top-5 among the 374 eval labels, and words -> photo R@1
  (each eval label's prompts query the 374 eval photos).
- Sound -> real photo: every ESC-10 fold-5 / ESC-50 eval clip of an ESC class that has ImageNet
  counterparts (``ESC_TO_WNIDS``, fixed before any training on ImageNet photos) queries all 797
  photos of the sample; the reciprocal rank of the first photo of a counterpart class and a hit
  in the first 10, averaged over the clips of a class, then over classes (so that the 93 dog
  breeds do not dominate). Chance (a random ranking) is computed exactly beside them.
- Words -> sound R@1: each ESC class's prompts query the eval clips of its set.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from math import comb
from pathlib import Path

import numpy as np
import torch

from synesthesia.models.minilm.model import SynesthesiaMiniLM
from synesthesia.models.minilm.preprocess import image_to_tensor
from synesthesia.train import data
from synesthesia.train.texts import AUDIO_TEMPLATES, IMAGE_TEMPLATES, build_bank

# The 93 dog breeds of the sample: WordNet hyponyms of dog (n02084071) present in the manifest.
DOG_WNIDS = (
    "n02085620", "n02085782", "n02085936", "n02086079", "n02086240", "n02086646", "n02086910",
    "n02087046", "n02087394", "n02088094", "n02088238", "n02088364", "n02088632", "n02089867",
    "n02090379", "n02090622", "n02090721", "n02091032", "n02091134", "n02091244", "n02091467",
    "n02091635", "n02091831", "n02092339", "n02093428", "n02093647", "n02093754", "n02093859",
    "n02093991", "n02094114", "n02094258", "n02094433", "n02095314", "n02095889", "n02096051",
    "n02096177", "n02096437", "n02097047", "n02097130", "n02098105", "n02098286", "n02098413",
    "n02099267", "n02099601", "n02099712", "n02099849", "n02100236", "n02100583", "n02100735",
    "n02101388", "n02101556", "n02102040", "n02102177", "n02102318", "n02102480", "n02102973",
    "n02104029", "n02104365", "n02105162", "n02105251", "n02105412", "n02105505", "n02105641",
    "n02105855", "n02106030", "n02106166", "n02106550", "n02106662", "n02107142", "n02107312",
    "n02107574", "n02107683", "n02107908", "n02108000", "n02108089", "n02108422", "n02108915",
    "n02109047", "n02110063", "n02110185", "n02110627", "n02111129", "n02111500", "n02111889",
    "n02112018", "n02112137", "n02112350", "n02112706", "n02113023", "n02113186", "n02113624",
    "n02113799", "n02113978",
)  # fmt: skip
CARS = (
    "n02930766", "n03100240", "n03594945", "n03670208", "n03770679", "n03777568", "n04037443",
    "n04285008",
)  # fmt: skip  # cab, convertible, jeep, limousine, minivan, Model T, racer, sports car
CLOCKS = ("n02708093", "n04548280")  # analog clock, wall clock

# ESC-50 class (ESC-10 labels go through texts.ESC10_TO_ESC50) -> the ImageNet classes of the
# sample that show what makes the sound. Only wnids present in the manifest. Without a
# counterpart in the sample (so not scored): helicopter, crow, chirping birds (too generic),
# insects, crickets, and the sounds of no one thing (rain, wind, footsteps, ...).
ESC_TO_WNIDS: dict[str, tuple[str, ...]] = {
    "dog": DOG_WNIDS,
    "rooster": ("n01514668",),  # cock
    "hen": ("n01514859",),  # hen
    "pig": ("n02395406",),  # hog
    "cow": ("n02403003",),  # ox
    "sheep": ("n02412080", "n02415577"),  # ram, bighorn
    "frog": ("n01641577", "n01644900"),  # bullfrog, tailed frog
    "cat": ("n02123159", "n02123394", "n02123597", "n02124075"),  # tiger/Persian/Siamese/Egyptian
    "airplane": ("n04592741",),  # wing (ImageNet's aircraft-wing photos; not "plane", a tool)
    "car horn": CARS,
    "engine": CARS,
    "train": ("n04310018", "n03895866", "n03393912", "n04335435"),  # steam locomotive,
    # passenger car, freight car, streetcar
    "chainsaw": ("n03000684",),  # chain saw
    "church bells": ("n02825657", "n03028079"),  # bell cote, church
    "clock tick": CLOCKS,
    "clock alarm": CLOCKS,
    "siren": ("n03977966", "n03345487"),  # police van, fire engine
    "vacuum cleaner": ("n04517823",),  # vacuum
    "keyboard typing": ("n03085013", "n04505470"),  # computer keyboard, typewriter keyboard
    "mouse click": ("n03793489",),  # mouse (the computer's)
    "toilet flush": ("n04447861",),  # toilet seat
    "sea waves": ("n09428293",),  # seashore
}


@dataclass(frozen=True)
class Photo:
    path: Path
    wnid: str
    label: str
    split: str


def imagenet_photos(split: str | None = None) -> list[Photo]:
    """The ImageNet sample's photos (manifest order); ``split``: ``train``, ``eval`` or all."""
    root = data.data_root() / "imagenet_sample"
    rows = [json.loads(x) for x in (root / "manifest.jsonl").read_text().splitlines() if x]
    photos = [Photo(root / r["file"], r["wnid"], r["label"], r["split"]) for r in rows]
    return [p for p in photos if split is None or p.split == split]


VAL_SIZE = 80  # train classes held out of training for design choices (``val``)
VAL_SEED = 18


def split_wnids(name: str) -> list[str]:
    """The classes of a split of the sample: ``eval`` (374, never trained on), ``train`` (423),
    ``val`` (``VAL_SIZE`` of the train classes, drawn once with ``VAL_SEED``: held out of
    training, captions and anchors while designs are compared) and ``fit`` (train minus val)."""
    if name == "eval":
        return [p.wnid for p in imagenet_photos("eval")]
    train = sorted(p.wnid for p in imagenet_photos("train"))
    if name == "train":
        return train
    pick = np.random.default_rng(VAL_SEED).choice(len(train), VAL_SIZE, replace=False)
    val = {train[i] for i in pick}
    if name == "val":
        return [w for w in train if w in val]
    if name == "fit":
        return [w for w in train if w not in val]
    raise ValueError(f"unknown ImageNet sample split {name!r} (eval, train, val, fit)")


@torch.inference_mode()
def photo_vectors(
    model: SynesthesiaMiniLM, photos: Sequence[Photo], batch: int = 64
) -> torch.Tensor:
    """Serving preprocessing (``image_to_tensor`` at the model's image size) -> unit vectors."""
    out = []
    for i in range(0, len(photos), batch):
        chunk = photos[i : i + batch]
        x = torch.stack(
            [image_to_tensor(data.load_picture(p.path), model.cfg.image) for p in chunk]
        )
        out.append(model.encode_image(x))
    return torch.cat(out)


def label_prototypes(model: SynesthesiaMiniLM, labels: Sequence[str]) -> torch.Tensor:
    """[L, D]: each label's mean prompt vector over the image templates (the same for every
    model: the manifest's label text in each of ``IMAGE_TEMPLATES``)."""
    return build_bank(
        model, {f"{i}": [x] for i, x in enumerate(labels)}, IMAGE_TEMPLATES
    ).prototypes()


def photo_label_metrics(photos: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Photo i and label i belong together (one photo per class): zero-shot top-1 / top-5
    (photo -> label) and R@1 (label -> photo)."""
    sims = photos @ labels.T
    truth = torch.arange(len(sims))
    top5 = sims.topk(min(5, sims.shape[1]), dim=1).indices
    return {
        "top1": float((top5[:, 0] == truth).float().mean()),
        "top5": float((top5 == truth[:, None]).any(1).float().mean()),
        "words_r1": float((sims.argmax(0) == truth).float().mean()),
    }


def chance_rr(n: int, m: int) -> float:
    """Expected reciprocal rank of the first of ``m`` relevant items in a random order of ``n``."""
    return sum(comb(n - r, m - 1) / comb(n, m) / r for r in range(1, n - m + 2))


def chance_hit(n: int, m: int, k: int) -> float:
    """Probability that one of ``m`` relevant items is among the first ``k`` of ``n`` at random."""
    return 1.0 - comb(n - m, k) / comb(n, k)


def sound_to_photo(
    clip_vecs: torch.Tensor, clip_classes: Sequence[str], photo_vecs: torch.Tensor,
    photo_wnids: Sequence[str], k: int = 10,
) -> dict[str, dict[str, float]]:  # fmt: skip
    """Per ESC class with counterparts: mean reciprocal rank of the first counterpart photo, hit
    rate within ``k``, their chance values and the number of clips; plus ``"mean"`` over the
    classes (each class weighs the same)."""
    order = (clip_vecs @ photo_vecs.T).argsort(dim=1, descending=True).numpy()
    wnids = np.asarray(photo_wnids)
    per: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for row, cls in zip(order, clip_classes, strict=True):
        want = ESC_TO_WNIDS.get(cls)
        if not want:
            continue
        first = int(np.flatnonzero(np.isin(wnids[row], want))[0]) + 1
        per[cls].append((1.0 / first, float(first <= k)))
    out: dict[str, dict[str, float]] = {}
    for cls in sorted(per):
        m = int(np.isin(wnids, ESC_TO_WNIDS[cls]).sum())
        rr, hit = np.mean(per[cls], axis=0)
        out[cls] = {"mrr": float(rr), f"r@{k}": float(hit), "chance mrr": chance_rr(len(wnids), m),
                    f"chance r@{k}": chance_hit(len(wnids), m, k), "clips": len(per[cls]),
                    "photos": m}  # fmt: skip
    if out:
        out["mean"] = {key: float(np.mean([v[key] for v in out.values()]))
                       for key in ("mrr", f"r@{k}", "chance mrr", f"chance r@{k}")}  # fmt: skip
        out["mean"]["clips"] = sum(v["clips"] for c, v in out.items() if c != "mean")
    return out


def words_to_sound_r1(
    model: SynesthesiaMiniLM, clip_vecs: torch.Tensor, clip_classes: Sequence[str],
    names: dict[str, list[str]],
) -> float:  # fmt: skip
    """Each class (``names``: class -> its names) with clips queries the clips by its mean audio
    prompt vector; the share of classes whose first clip is one of its own."""
    present = [c for c in names if c in set(clip_classes)]
    bank = build_bank(model, {c: names[c] for c in present}, AUDIO_TEMPLATES)
    top = (bank.prototypes() @ clip_vecs.T).argmax(1).tolist()
    return float(np.mean([clip_classes[j] == c for c, j in zip(present, top, strict=True)]))

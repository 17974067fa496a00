"""Training on real photos: WordNet captions (from a tiny ``data.noun`` fixture: the tests do not
need WordNet installed) and the photo augmentation."""

from __future__ import annotations

from pathlib import Path

import pytest
from synesthesia.train.wordnet import class_texts, definition, load_nouns

NOUNS = """\
  1 This software and database is being provided to you, the LICENSEE, by
02395003 05 n 01 swine 0 001 @ 02394477 n 0000 | stout-bodied short-legged omnivorous animals
02394477 05 n 01 even-toed_ungulate 0 000 | a hoofed mammal
02395406 05 n 04 hog 0 pig 0 grunter 0 squealer 0 001 @ 02395003 n 0000 | domestic swine; "a hog"
02412080 05 n 02 ram 0 tup 0 001 @ 02411705 n 0000 | uncastrated adult male sheep
02411705 05 n 01 sheep 0 001 @ 02395003 n 0000 | woolly usually horned ruminant mammal
"""


def test_wordnet_captions_from_synonyms_gloss_and_hypernyms(tmp_path: Path) -> None:
    (tmp_path / "data.noun").write_text(NOUNS)
    nouns = load_nouns(tmp_path / "data.noun")
    assert nouns["02395406"].words == ("hog", "pig", "grunter", "squealer")
    assert definition(nouns["02395406"].gloss) == "domestic swine"
    names, caps = class_texts(nouns, "n02395406", banned=set())
    assert names == ["hog", "pig", "grunter", "squealer"]
    assert "a hog, domestic swine." in caps and "a hog, a kind of swine." in caps
    assert "a photo of an even-toed ungulate." in caps
    # a banned name (an unseen class's) is never a name, nor a hypernym, nor in a gloss
    names, caps = class_texts(nouns, "n02412080", banned={"sheep", "swine"})
    assert names == ["ram", "tup"]
    assert not [c for c in caps if "sheep" in c or "swine" in c]
    assert class_texts(nouns, "n02411705", banned={"sheep"}) == ([], [])


def test_wordnet_missing_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="wordnet-base"):
        load_nouns(tmp_path / "data.noun")


def test_random_resized_crops_are_seeded_views_at_the_model_size() -> None:
    import torch
    from synesthesia.train.augment import random_resized_crop

    x = torch.rand(4, 3, 64, 64)
    a = random_resized_crop(x, torch.Generator().manual_seed(0), 32, (0.25, 1.0))
    b = random_resized_crop(x, torch.Generator().manual_seed(0), 32, (0.25, 1.0))
    assert a.shape == (4, 3, 32, 32) and torch.equal(a, b)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0


def test_a_kind_of_a_known_class_is_half_that_class() -> None:
    import torch
    from synesthesia.train.sets import TrainSet
    from synesthesia.train.texts import ClassBank

    bank = ClassBank(["frog", "cat", "bullfrog"], torch.eye(3), torch.arange(3), [])
    ts = TrainSet(bank, torch.tensor([0, 1, 2]), torch.ones(3), parents=torch.tensor([-1, -1, 0]))
    t = ts.targets(torch.tensor([2, 1]))
    assert torch.equal(t, torch.tensor([[0.5, 0.0, 0.5], [0.0, 1.0, 0.0]]))


def test_photos_train_only_on_seen_classes_and_never_on_their_names() -> None:
    from synesthesia.train import openworld as ow
    from synesthesia.train.config import Stage
    from synesthesia.train.data import data_root
    from synesthesia.train.sets import held_out_names, imagenet_classes

    from tests.shared_data import require

    require(data_root() / "imagenet_sample" / "manifest.jsonl", "the ImageNet sample")
    stage = Stage(imagenet="fit", imagenet_concepts=50)
    banned = held_out_names(stage)
    unseen = set(ow.split_wnids("eval")) | set(ow.split_wnids("val"))
    assert {p.label.lower() for p in ow.imagenet_photos() if p.wnid in unseen} <= banned
    picked = imagenet_classes(stage, 0, banned)
    assert len(picked) <= 50 and picked == imagenet_classes(stage, 0, banned)
    for photo, names, caps, _ in picked:
        assert photo.split == "train" and photo.wnid in ow.split_wnids("fit")
        assert not {n.lower() for n in names} & banned and not caps  # no WordNet here


def test_cut_mix_pastes_a_patch_and_mixes_the_targets_by_area() -> None:
    import torch
    from synesthesia.train.augment import cut_mix

    x = torch.stack([torch.zeros(3, 8, 8), torch.ones(3, 8, 8)])
    t = torch.eye(2)
    same, kept = cut_mix(x, t, torch.Generator().manual_seed(0), prob=0.0)
    assert torch.equal(same, x) and torch.equal(kept, t)
    for seed in range(20):
        y, u = cut_mix(x, t, torch.Generator().manual_seed(seed), prob=1.0)
        assert torch.allclose(u.sum(1), torch.ones(2))
        # each picture's targets weigh the other picture by the share of its pixels it shows
        assert torch.allclose(u[0, 1], y[0].mean()) and torch.allclose(u[1, 0], 1 - y[1].mean())
    assert torch.equal(x, torch.stack([torch.zeros(3, 8, 8), torch.ones(3, 8, 8)]))  # untouched

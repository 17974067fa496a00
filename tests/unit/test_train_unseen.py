"""What training keeps clear of: the unseen classes' names in every stage (``unseen_out``),
distractor words unrelated to every class, and a tower of another design started from a
trained one (``init_from``). WordNet comes from tiny fixtures: the tests do not need it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

# artifact (a root) > tool > hammer > mallet; artifact > car > cab; artifact > cart (no tagged
# sense); artifact > Oslo (a proper noun); artifact > lion (banned below); artifact > jug
NOUNS = """\
  1 This software and database is being provided to you, the LICENSEE, by
00021939 03 n 01 artifact 0 000 | a man-made object
04451818 06 n 01 tool 0 001 @ 00021939 n 0000 | an implement
03481172 06 n 01 hammer 0 001 @ 04451818 n 0000 | a hand tool
03720163 06 n 01 mallet 0 001 @ 03481172 n 0000 | a hammer with a large head
02958343 06 n 01 car 0 001 @ 00021939 n 0000 | a motor vehicle
02930766 06 n 01 cab 0 001 @ 02958343 n 0000 | a car driven for hire
02970849 06 n 01 cart 0 001 @ 00021939 n 0000 | a wheeled vehicle
08981244 15 n 01 Oslo 0 001 @ 00021939 n 0000 | a capital
02129165 05 n 01 lion 0 001 @ 00021939 n 0000 | a big cat
03603722 06 n 01 jug 0 001 @ 00021939 n 0000 | a vessel
09000001 06 n 01 feeling 0 000 | not a thing
"""
INDEX = """\
  1 This software and database is being provided to you, the LICENSEE, by
artifact n 1 1 @ 1 1 00021939
tool n 1 1 @ 1 1 04451818
hammer n 1 1 @ 1 1 03481172
mallet n 1 1 @ 1 1 03720163
car n 1 1 @ 1 1 02958343
cab n 1 1 @ 1 1 02930766
cart n 1 1 @ 1 0 02970849
Oslo n 1 1 @ 1 1 08981244
lion n 1 1 @ 1 1 02129165
jug n 1 1 @ 1 1 03603722
feeling n 1 0 1 1 09000001
"""


def test_distractors_are_common_things_clear_of_every_class(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from synesthesia.train.wordnet import distractors, load_nouns, noun_senses

    (tmp_path / "data.noun").write_text(NOUNS)
    (tmp_path / "index.noun").write_text(INDEX)
    monkeypatch.setenv("SYNESTHESIA_WORDNET", str(tmp_path))
    nouns = load_nouns()
    assert noun_senses()["cart"] == (["02970849"], 0)
    got = distractors(nouns, clear={"02958343"}, banned={"lion"}, count=10, seed=0)
    # not car, nor its kind (cab), nor its ancestor (artifact); not the banned lion, the
    # untagged cart, the proper noun, or a word that is no thing (feeling)
    assert [w for _, w in got] == ["hammer", "jug", "mallet", "tool"]  # (offset order)
    # with hammer trained, its kind (mallet) and its ancestor (tool) go
    got = distractors(nouns, clear={"03481172"}, banned=set(), count=10, seed=0)
    assert [w for _, w in got] == ["lion", "cab", "car", "jug"]
    # a seeded draw of ``count``
    one = distractors(nouns, clear=set(), banned=set(), count=2, seed=3)
    assert len(one) == 2 and one == distractors(nouns, set(), set(), 2, 3)


def test_other_sounds_named_like_an_unseen_class_are_left_out() -> None:
    from synesthesia.train.data import Clip
    from synesthesia.train.sets import seen_clips

    clips = [
        Clip(Path("a.ogg"), "lion", "tux", "A lion."),
        Clip(Path("b.ogg"), "dog", "tux", "A dog."),
        Clip(Path("c.wav"), "x", "opensfx", "A lion."),
        Clip(Path("1-1-A.flac"), "hen", "esc50"),  # ESC's own class: kept
    ]
    kept = seen_clips(clips, {"hen", "dog"}, banned={"lion", "hen"})
    assert [c.path.name for c in kept] == ["b.ogg", "1-1-A.flac"]


def test_unseen_out_bans_the_eval_names_in_a_stage_without_photos(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from synesthesia.train import openworld as ow
    from synesthesia.train import sets
    from synesthesia.train.config import Stage
    from synesthesia.train.data import data_root
    from synesthesia.train.wordnet import Synset

    from tests.shared_data import require

    require(data_root() / "imagenet_sample" / "manifest.jsonl", "the ImageNet sample")

    class Fake(dict[str, Synset]):
        def __missing__(self, offset: str) -> Synset:
            return Synset((f"syn{offset}",), (), "")

    monkeypatch.setattr(sets, "load_nouns", lambda: Fake())
    assert sets.held_out_names(Stage()) == set()
    banned = sets.held_out_names(Stage(unseen_out=True))
    labels = {p.wnid: p.label.lower() for p in ow.imagenet_photos()}
    for wnid in ow.split_wnids("eval"):
        assert labels[wnid] in banned and f"syn{wnid[1:]}" in banned
    # the train classes' names are not banned (unless an eval class shares the name)
    train_only = {labels[w] for w in ow.split_wnids("train")} - {
        labels[w] for w in ow.split_wnids("eval")
    }
    assert not train_only & banned


def test_a_tower_of_another_design_starts_from_a_trained_one(tmp_path: Path) -> None:
    import dataclasses

    from synesthesia.models.minilm.weights import save_towers
    from synesthesia.train.config import TrainConfig
    from synesthesia.train.loop import build_model, init_tower

    cfg = TrainConfig.load(Path(__file__).resolve().parents[2] / "configs/train/smoke.json")
    trained = build_model(cfg, ("image",))
    path = tmp_path / "towers.safetensors"
    save_towers(trained, path)

    own = dataclasses.replace(cfg.model.image, mode="own", own_layers=1)
    model = build_model(dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, image=own)),
                        ("image",))  # fmt: skip
    assert model.image is not None and trained.image is not None
    fresh = init_tower(model.image, str(path), "image")
    assert fresh and all(k.startswith("own.") for k in fresh)
    for k, v in trained.image.state_dict().items():
        assert torch.equal(model.image.state_dict()[k], v)

    wider = dataclasses.replace(cfg.model.image, channels=(8, 16, 32))
    other = build_model(dataclasses.replace(cfg, model=dataclasses.replace(cfg.model,
                        image=wider)), ("image",))  # fmt: skip
    assert other.image is not None
    with pytest.raises(ValueError, match="does not fit"):
        init_tower(other.image, str(path), "image")

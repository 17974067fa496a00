"""The open-world evaluation (issue 18): its metrics on made-up vectors, the fixed ESC ->
ImageNet mapping and the splits of the ImageNet sample."""

from __future__ import annotations

from itertools import permutations

import pytest
import torch
import torch.nn.functional as F
from synesthesia.train import openworld as ow
from synesthesia.train.data import data_root

from tests.shared_data import require


def _needs_sample() -> None:
    require(
        data_root() / "imagenet_sample" / "manifest.jsonl", "the ImageNet sample (SYNESTHESIA_DATA)"
    )


@pytest.mark.parametrize(("n", "m"), [(4, 1), (5, 2), (6, 3)])
def test_chance_values_are_the_mean_over_every_order(n: int, m: int) -> None:
    rr, hit = [], []
    for order in permutations(range(n)):  # items 0..m-1 are relevant
        first = min(order.index(i) for i in range(m)) + 1
        rr.append(1 / first)
        hit.append(first <= 2)
    assert ow.chance_rr(n, m) == pytest.approx(sum(rr) / len(rr))
    assert ow.chance_hit(n, m, 2) == pytest.approx(sum(hit) / len(hit))


def test_photo_label_metrics_count_top1_top5_and_words_to_photo() -> None:
    labels = torch.eye(6)
    photos = torch.eye(6)[[0, 1, 2, 3, 5, 4]]  # photos 4 and 5 swapped: wrong at top-1
    photos[4] += 0.5 * torch.eye(6)[4]  # ... but their own label is second
    photos[5] += 0.5 * torch.eye(6)[5]
    m = ow.photo_label_metrics(F.normalize(photos, dim=-1), labels)
    assert m["top1"] == pytest.approx(4 / 6) and m["top5"] == 1.0
    assert m["words_r1"] == pytest.approx(4 / 6)


def test_sound_to_photo_averages_per_class_and_ranks_the_first_counterpart() -> None:
    dogs = ow.ESC_TO_WNIDS["dog"][:3]
    wnids = [*dogs, "n01514668", "n09999999"]  # three dog breeds, the cock, something else
    photos = torch.eye(5)
    # two dog clips: a dog photo first (RR 1) / third (RR 1/3); one rooster clip: cock second
    clips = torch.tensor([[1.0, 0, 0, 0, 0], [0, 0, 0.3, 0.5, 1], [0, 0, 0, 0.5, 1]])
    per = ow.sound_to_photo(clips, ["dog", "dog", "rooster"], photos, wnids, k=2)
    assert per["dog"]["mrr"] == pytest.approx((1 + 1 / 3) / 2) and per["dog"]["clips"] == 2
    assert per["dog"]["r@2"] == pytest.approx(0.5) and per["dog"]["photos"] == 3
    assert per["rooster"]["mrr"] == pytest.approx(0.5) and per["rooster"]["r@2"] == 1.0
    assert per["mean"]["mrr"] == pytest.approx(((1 + 1 / 3) / 2 + 0.5) / 2)  # per class
    assert per["rooster"]["chance mrr"] == pytest.approx(ow.chance_rr(5, 1))
    # a class without counterparts is not scored
    assert "helicopter" not in ow.sound_to_photo(clips[:1], ["helicopter"], photos, wnids)


def test_the_esc_mapping_names_only_classes_of_the_sample() -> None:
    _needs_sample()
    from synesthesia.train.sets import esc50_names

    present = {p.wnid for p in ow.imagenet_photos()}
    assert set(ow.ESC_TO_WNIDS) <= set(esc50_names())
    for cls, wnids in ow.ESC_TO_WNIDS.items():
        assert wnids and set(wnids) <= present, cls
    assert len(ow.DOG_WNIDS) == 93


def test_the_splits_of_the_sample() -> None:
    _needs_sample()
    ev, train, val, fit = (ow.split_wnids(s) for s in ("eval", "train", "val", "fit"))
    assert (len(ev), len(train), len(val), len(fit)) == (374, 423, ow.VAL_SIZE, 423 - ow.VAL_SIZE)
    assert not set(ev) & set(train) and set(val) | set(fit) == set(train)
    assert not set(val) & set(fit)
    assert ow.split_wnids("val") == val  # drawn once, the same every time

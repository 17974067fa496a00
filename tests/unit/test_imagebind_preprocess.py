"""ImageBind preprocessing against the reference's golden tensors (../shared/golden/imagebind_a).

Images and token ids are bitwise equal. Audio fbank is not bitwise: even from the reference's
own decoded 16 kHz waveforms our kaldi fbank differs by float32 rounding (~4e-5 on most files;
the reference machine's FFT/matmul kernels differ), and near-silent frames amplify it through
the log. The README measures that noise per file (float32 reference vs a float64 run), so audio
is held to max(1e-4, that noise).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from synesthesia.media import decode_audio_channels
from synesthesia.models.imagebind import preprocess as P
from synesthesia.models.imagebind.tokenizer import ClipTokenizer

from tests.shared_data import require

torch.set_num_threads(2)


def shared_root() -> Path:
    root = Path(os.environ.get("SYNESTHESIA_SHARED", Path(__file__).parents[2].parent / "shared"))
    require(root / "golden" / "imagebind_a" / "manifest.json", "golden files")
    return root


@pytest.fixture(scope="module")
def golden() -> Path:
    return shared_root() / "golden" / "imagebind_a"


@pytest.fixture(scope="module")
def manifest(golden: Path) -> dict:
    return json.loads((golden / "manifest.json").read_text())


def media_path(entry: dict) -> Path:
    path = shared_root().parent / entry["path"]  # manifest paths start with "shared/"
    if not path.is_file():
        pytest.skip(f"{path} missing")
    return path


def test_token_ids_exact(golden: Path, manifest: dict) -> None:
    texts = [t["text"] for t in manifest["texts"]]
    ids = ClipTokenizer()(texts).numpy()
    expected = np.load(golden / "preprocess_text.npz")["token_ids"]
    np.testing.assert_array_equal(ids, expected)
    tok = ClipTokenizer()
    for entry in manifest["texts"]:
        row, truncated = tok.encode_padded(entry["text"])
        assert truncated == entry["truncated"]
        assert int(row.argmax()) == entry["eot_argmax_index"]


def test_image_preprocessing_from_raw_files(golden: Path, manifest: dict) -> None:
    pv = np.load(golden / "preprocess_vision.npz")
    decoded = np.load(golden / "preprocess_vision_decoded.npz")
    for i, entry in enumerate(manifest["images"]):
        with Image.open(media_path(entry)) as im:
            img = im.convert("RGB")  # the reference's decoder: alpha dropped, not composited
        assert np.abs(P.preprocess_image(img).numpy() - pv["pixel_values"][i]).max() <= 1e-4
        np.testing.assert_array_equal(np.asarray(P.resize_and_crop(img)), pv["crop_uint8"][i])
        from_pixels = P.preprocess_image(Image.fromarray(decoded[f"decoded_{i:02d}"]))
        assert np.abs(from_pixels.numpy() - pv["pixel_values"][i]).max() <= 1e-4


def audio_tolerance(entry: dict) -> tuple[float, float]:
    """(max, p99.9) allowed: 1e-4, or the reference's own float32 noise on this file."""
    return (
        max(1e-4, entry["max_abs_diff_vs_float64_pipeline"]),
        max(1e-4, entry["p99_9_abs_diff_vs_float64_pipeline"]),
    )


def test_clip_bounds_exact(golden: Path, manifest: dict) -> None:
    bounds = np.load(golden / "preprocess_audio.npz")["clip_sample_bounds_16k"]
    for i, entry in enumerate(manifest["audios"]):
        assert P.clip_bounds(entry["num_samples_16k"]) == [tuple(b) for b in bounds[i].tolist()]


def test_audio_fbank_from_reference_waveforms(golden: Path, manifest: dict) -> None:
    """Resampling and fbank checked apart from decoding, on the reference's decoded samples."""
    fb = np.load(golden / "preprocess_audio.npz")["fbank_clips"]
    waves = np.load(golden / "preprocess_audio_waveforms.npz")
    for i, entry in enumerate(manifest["audios"]):
        if f"wave_16k_{i:02d}" not in waves:
            continue
        w16 = torch.from_numpy(waves[f"wave_16k_{i:02d}"])
        resampled = P.resample(torch.from_numpy(waves[f"wave_orig_{i:02d}"]), entry["sample_rate"])
        assert resampled.shape == w16.shape
        assert (resampled - w16).abs().max() <= 1e-6
        diff = np.abs(P.audio_to_clips(w16).numpy() - fb[i])
        max_tol, p999_tol = audio_tolerance(entry)
        assert diff.max() <= max_tol, f"file {i}: {diff.max():.3g}"
        assert np.quantile(diff, 0.999) <= p999_tol


def test_audio_preprocessing_from_raw_files(golden: Path, manifest: dict) -> None:
    """soundfile decoding (not FFmpeg), torchaudio resampling, our clips; stereo kept."""
    fb = np.load(golden / "preprocess_audio.npz")["fbank_clips"]
    for i, entry in enumerate(manifest["audios"]):
        path = media_path(entry)
        wave = torch.from_numpy(decode_audio_channels(path.read_bytes()))
        assert wave.shape[0] == entry["channels"]
        clips = P.audio_to_clips(wave).numpy()
        diff = np.abs(clips - fb[i])
        max_tol, p999_tol = audio_tolerance(entry)
        if wave.shape[1] != entry["num_samples_16k"]:  # Vorbis decoders disagree on length (#6)
            max_tol, p999_tol = max(max_tol, 1e-3), max(p999_tol, 1e-3)
        assert diff.max() <= max_tol, f"file {i} ({entry['path']}): {diff.max():.3g}"
        assert np.quantile(diff, 0.999) <= p999_tol
        if entry["path"].endswith((".wav", ".flac")):  # identical PCM: only fbank rounding
            assert diff.max() <= 1e-4


def test_audio_quirks_are_reproduced(golden: Path) -> None:
    """The in-place mean side effect and the padding value are part of the reference."""
    fb = np.load(golden / "preprocess_audio.npz")["fbank_clips"]
    w16 = torch.from_numpy(np.load(golden / "preprocess_audio_waveforms.npz")["wave_16k_02"])
    independent = torch.stack(
        [P.clip_fbank(c - c.mean()) for c in (w16[:, a:b] for a, b in P.clip_bounds(w16.shape[1]))]
    )
    assert np.abs(independent.numpy() - fb[2]).max() > 0.1  # copies would be wrong here
    assert np.abs(P.audio_to_clips(w16).numpy() - fb[2]).max() <= 1e-4
    np.testing.assert_allclose(fb[2][..., 198:], (0 + 4.268) / 9.138, rtol=1e-6)
    np.testing.assert_allclose(P.audio_to_clips(w16).numpy()[..., 198:], fb[2][..., 198:])


def test_too_short_audio_is_rejected() -> None:
    with pytest.raises(ValueError, match="at least 400"):
        P.audio_to_clips(torch.zeros(1, 399))
    assert P.audio_to_clips(torch.randn(1, 400)).shape == (3, 1, 128, 204)

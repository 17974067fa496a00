"""Bounded cost for every input (issue 15): resampling at any rate, truncated-header images,
text truncated before tokenisation, user-facing media errors."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF
from synesthesia.errors import InvalidInput
from synesthesia.media import audio as A
from synesthesia.media import decode_audio

from tests import media_factory as mf


def wav_at(sr: int, seconds: float = 1.0) -> bytes:
    t = np.arange(round(seconds * sr)) / sr
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sr, format="WAV")
    return buf.getvalue()


@pytest.mark.parametrize("sr", [8_000, 11_025, 22_050, 44_100, 48_000])
def test_standard_rates_keep_torchaudio_bit_for_bit(sr: int) -> None:
    """The rates of the ImageBind goldens (8, 44.1, 48 kHz) and the other usual ones."""
    assert A.resample_plan(sr, 16_000)[0] == "torchaudio"
    wave = np.random.default_rng(sr).standard_normal((2, sr // 2)).astype(np.float32)
    expected = AF.resample(torch.from_numpy(wave), sr, 16_000).numpy()
    np.testing.assert_array_equal(A.resample(wave, sr, 16_000), expected)


def test_16k_passes_through() -> None:
    wave = np.zeros(100, dtype=np.float32)
    assert A.resample(wave, 16_000, 16_000) is wave


@pytest.mark.parametrize(("p", "q"), [(441, 160), (160, 441), (997, 1000), (1000, 997), (7, 3)])
def test_polyphase_is_torchaudios_filter(p: int, q: int) -> None:
    """Same windowed sinc as torchaudio (compared in float64, where torchaudio's own float32
    kernel is not the limit): equal to float32 rounding."""
    wave = np.random.default_rng(p * q).standard_normal((2, 3000))
    expected = AF.resample(torch.from_numpy(wave), p, q).numpy()
    got = A._resample_polyphase(wave.astype(np.float32), p, q)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() < 2e-6


def test_every_rate_has_a_bounded_plan_and_a_tiny_ratio_error() -> None:
    rates = [*range(1, 400_000, 97), *range(400_000, 100_000_000, 999_983), 2**31 - 1]
    for sr in rates:
        path, p, q = A.resample_plan(sr, 16_000)
        w = A._half_width(p, q)
        if path == "torchaudio":
            assert q * (p + 2 * w) <= A.TORCHAUDIO_MAX_TAPS
        else:
            assert q * (2 * w + 2) <= A.POLYPHASE_MAX_TAPS
        error = abs(p * 16_000 / (q * sr) - 1)
        assert error == 0 if path != "approximate" else error < 7e-6, sr


@pytest.mark.parametrize("sr", [8_001, 44_101, 109_636, 192_001, 10_000_019])
def test_odd_rates_cost_little(sr: int) -> None:
    """Were 3.1 s / +2 GB (8,001 Hz), 31.7 s / +9.4 GB (44,101 Hz) for a 1 s clip."""
    seconds = 1.0 if sr < 1_000_000 else 0.06
    data = wav_at(sr, seconds)
    start = time.process_time()
    out = decode_audio(data)
    assert time.process_time() - start < 1.0
    assert abs(len(out) - 16_000 * seconds) <= 1
    # still the same tone: the spectrum peaks at 440 Hz
    spectrum = np.abs(np.fft.rfft(out))
    assert abs(np.argmax(spectrum) * 16_000 / len(out) - 440) < max(2, 16_000 / len(out))


@pytest.mark.parametrize(
    "data",
    [b"RIFF" + b"\0" * 40, b"garbage" * 10, b"fLaC" + b"\0" * 50, b"OggS" + b"\0" * 60],
)
def test_audio_errors_speak_of_the_file(data: bytes) -> None:
    with pytest.raises(InvalidInput) as err:
        decode_audio(data)
    message = str(err.value)
    assert "0x" not in message and "BytesIO" not in message and "<" not in message
    assert "not decodable audio" in message


def test_truncated_flac_is_named() -> None:
    data = mf.wav(2.0, fmt="FLAC")
    with pytest.raises(InvalidInput, match="audio"):
        decode_audio(data[: len(data) // 3])


# --- text: only the part that reaches the context is tokenised ---------------------------------


@pytest.fixture(scope="module")
def wordpiece():  # type: ignore[no-untyped-def]
    from synesthesia.models.minilm.embedder import load_tokenizer

    return load_tokenizer(256)


def test_every_separator_splits_the_shipped_tokenizer(wordpiece) -> None:  # type: ignore[no-untyped-def]
    """Cutting just before a separator concatenates the token sequences of both sides."""
    from synesthesia.media.text import wordpiece_separators

    pattern = wordpiece_separators(wordpiece)
    candidates = [chr(c) for c in range(0x10000) if pattern.fullmatch(chr(c))]
    candidates += [chr(c) for c in range(0x20000, 0x2FA20, 101) if pattern.fullmatch(chr(c))]
    assert len(candidates) > 800

    def ids(s: str) -> list[int]:
        return wordpiece.encode(s, add_special_tokens=False).ids

    for c in candidates:
        for left in ("Straße", "ΑΣ", "e\u0301", "中"):
            right = c + "d\u0301x"
            assert ids(left + right) == ids(left) + ids(right), (hex(ord(c)), left)


def long_texts() -> dict[str, str]:
    rng = np.random.default_rng(7)
    words = ["the", "Dog", "barks", "naïve", "café", "中文", "—", "xylophone's", "e\u0301t\u00e9"]
    prose = " ".join(rng.choice(words, 200_000))[:900_000]
    return {
        "prose": prose,
        "spaces then prose": " " * 500_000 + prose[:400_000],
        "cjk": "中国" * 200_000,
        "dashes": "—a" * 200_000,
        "punctuation": "!?" * 300_000,
        "one long word": "a" * 500_000 + " b" * 5000,
        "accents": "e\u0301" * 300_000 + " word" * 2000,
        "controls": "\x01" * 400_000 + "word " * 2000,
        "few tokens": "word " * 200 + " " * 600_000,
    }


@pytest.mark.parametrize("name", list(long_texts()))
def test_wordpiece_prefix_is_exact(wordpiece, name: str) -> None:  # type: ignore[no-untyped-def]
    from synesthesia.media.text import wordpiece_prefix, wordpiece_separators

    text = long_texts()[name]

    def count(chunk: str) -> int:
        return len(wordpiece.encode(chunk, add_special_tokens=False).ids)

    prefix = wordpiece_prefix(text, count, 254, wordpiece_separators(wordpiece))
    full, cut = wordpiece.encode(text), wordpiece.encode(prefix)
    assert cut.ids == full.ids
    assert bool(cut.overflowing) == bool(full.overflowing)
    if name not in ("few tokens",):
        assert len(prefix) < len(text)


def test_minilm_long_text_vectors_equal_the_untruncated_path() -> None:
    from synesthesia.models import create_model

    model = create_model("synesthesia-minilm", modalities=["text"])
    texts = [long_texts()["prose"], long_texts()["spaces then prose"], "Le chien aboie " * 300]
    texts = [t.encode()[:1_000_000].decode(errors="ignore") for t in texts]  # within the limit
    ours = model.embed("text", texts)
    ref = []
    for text in texts:
        enc = model.tokenizer.encode(text)  # the whole text, as before
        ids = torch.tensor([enc.ids])
        ref.append(model.model.encode_text(ids, torch.ones_like(ids, dtype=torch.bool)).numpy()[0])
    np.testing.assert_array_equal(ours, np.stack(ref))
    prepared = model.prepare("text", texts[0])
    assert prepared.truncated


def test_clip_tokenizer_stops_reading_after_its_context() -> None:
    pytest.importorskip("open_clip")
    from synesthesia.models.imagebind.tokenizer import ClipTokenizer

    tok = ClipTokenizer()
    for text in [*list(long_texts().values())[:4], "a short one", "&amp;lt; x " * 40]:
        full = [tok.sot_id, *tok.encode(text)]
        expected = [*full[:76], tok.eot_id]
        row, truncated = tok.encode_padded(text)
        assert row[: len(expected)].tolist() == expected
        assert truncated == (len(full) + 1 > 77)
    # BPE (the costly part) runs on the first pieces only: at most one per id of the row
    pieces: list[str] = []
    bpe = tok._bpe
    tok._bpe = lambda chars: (pieces.append(chars), bpe(chars))[1]  # type: ignore[method-assign]
    tok.encode_padded(long_texts()["prose"])
    assert 0 < len(pieces) <= tok.context_length - 1


# --- images: a header must be backed by data ---------------------------------------------------


def header_only(fmt: str, width: int = 6000, height: int = 6000) -> bytes:
    """A valid 16x16 file whose header is patched to claim width x height (631 bytes or so)."""
    import struct

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (120, 30, 200)).save(buf, fmt, quality=80)
    data = bytearray(buf.getvalue())
    if fmt == "JPEG":
        struct.pack_into(">HH", data, data.find(b"\xff\xc0") + 5, height, width)
    else:  # simple lossy WebP: the VP8 frame header
        struct.pack_into("<HH", data, 26, width, height)
    return bytes(data)


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_header_claiming_more_than_the_file_holds_is_refused_up_front(
    fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import ImageFile
    from synesthesia.media import decode_image

    data = header_only(fmt)
    assert len(data) < 1000
    loads: list[str] = []  # PIL allocates the pixel buffer in load(): was 0.17 s and +230 MB
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(
        ImageFile.ImageFile, "load", lambda im: (loads.append(im.format), real_load(im))[1]
    )
    with pytest.raises(InvalidInput, match=r"truncated: its header declares 36,000,000 pixels"):
        decode_image(data)
    assert loads == []
    decode_image(header_only(fmt, 16, 16))  # an honest header: decoded, through load()
    assert loads and set(loads) == {fmt}


@pytest.mark.parametrize(
    ("fmt", "kw"),
    [("JPEG", {"quality": 1, "progressive": True, "optimize": True}), ("PNG", {}), ("GIF", {})],
)
def test_flat_large_images_are_still_accepted(fmt: str, kw: dict) -> None:
    """The most compressible real files sit far inside the bounds."""
    from PIL import Image
    from synesthesia.media import decode_image
    from synesthesia.media.image import MAX_PIXELS_PER_BYTE

    buf = io.BytesIO()
    Image.new("L", (3000, 2000), 128).save(buf, fmt, **kw)
    assert 3000 * 2000 / len(buf.getvalue()) < MAX_PIXELS_PER_BYTE[fmt] / 1.5
    assert decode_image(buf.getvalue()).size == (3000, 2000)


def test_decoded_size_is_bounded_before_decoding() -> None:
    """A small FLAC of silence claiming many channels at a high rate is refused from its
    header; 48 kHz stereo at the full duration is not."""
    buf = io.BytesIO()
    sf.write(buf, np.zeros((96_000 * 2, 8), dtype=np.float32), 96_000, format="FLAC")
    with pytest.raises(InvalidInput, match="decodes to 192,000 frames x 8 channels"):
        decode_audio(buf.getvalue(), max_seconds=2)
    assert len(decode_audio(wav_at(48_000, 2.0), max_seconds=2)) == 32_000

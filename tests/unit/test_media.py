"""The media decoding policy: formats, EXIF, alpha, GIF frames, bombs, audio limits, mixing."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
from PIL import Image
from synesthesia.errors import InvalidInput
from synesthesia.media import decode_audio, decode_image, validate_text

from tests import media_factory as mf


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP"])
def test_image_formats_decode_to_rgb(fmt: str) -> None:
    img = Image.new("RGB", (20, 10), (200, 30, 40))
    out = decode_image(mf.encode(img, fmt))
    assert out.mode == "RGB" and out.size == (20, 10)


def test_exif_orientation_is_applied() -> None:
    img = Image.new("RGB", (40, 20), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise when displayed
    out = decode_image(mf.encode(img, "JPEG", exif=exif.tobytes()))
    assert out.size == (20, 40)


def test_alpha_is_composited_on_white() -> None:
    img = Image.new("RGBA", (4, 4), (255, 0, 0, 0))  # fully transparent red
    out = np.asarray(decode_image(mf.encode(img, "PNG")))
    assert (out == 255).all()


def test_gif_uses_first_frame() -> None:
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 255, 0))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    out = np.asarray(decode_image(buf.getvalue()))
    assert out[0, 0, 0] > 200 and out[0, 0, 1] < 50


def test_image_limits_and_garbage() -> None:
    with pytest.raises(InvalidInput, match="50000x50000"):
        decode_image(mf.png_bomb_header())
    with pytest.raises(InvalidInput, match="limit"):
        decode_image(mf.png((100, 100)), max_pixels=5000)
    with pytest.raises(InvalidInput, match="empty"):
        decode_image(b"")
    with pytest.raises(InvalidInput, match="decodable"):
        decode_image(mf.random_bytes())
    with pytest.raises(InvalidInput):
        decode_image(mf.encode(Image.new("RGB", (10, 10)), "TIFF"))  # not an accepted format


@pytest.mark.parametrize(
    ("fmt", "subtype"),
    [("WAV", None), ("FLAC", None), ("OGG", "VORBIS"), ("MP3", "MPEG_LAYER_III")],
)
def test_audio_formats_resample_and_mix(fmt: str, subtype: str | None) -> None:
    data = mf.wav(1.0, sr=44_100, channels=2, fmt=fmt, subtype=subtype)
    out = decode_audio(data, target_sr=16_000)
    assert out.dtype == np.float32 and out.ndim == 1
    assert abs(len(out) - 16_000) < 1200  # MP3 adds encoder padding


def test_stereo_is_mixed_to_mono() -> None:
    left = np.ones(1600, dtype=np.float32) * 0.5
    buf = io.BytesIO()
    sf.write(buf, np.stack([left, -left * 0.5], 1), 16_000, format="WAV", subtype="FLOAT")
    out = decode_audio(buf.getvalue())
    np.testing.assert_allclose(out, 0.125, atol=1e-6)


def test_audio_limits() -> None:
    with pytest.raises(InvalidInput, match="limit is 2 s"):
        decode_audio(mf.wav(3.0), max_seconds=2)
    with pytest.raises(InvalidInput, match="1 samples"):
        decode_audio(mf.wav(1 / 16_000))
    with pytest.raises(InvalidInput, match="empty"):
        decode_audio(b"")
    with pytest.raises(InvalidInput, match="decodable"):
        decode_audio(mf.random_bytes())


def test_text_policy() -> None:
    assert validate_text("  hi ") == "  hi "
    assert validate_text("héllo".encode()) == "héllo"
    for bad, match in (
        ("", "empty"),
        ("   \n", "empty"),
        (b"\xff\xfe", "UTF-8"),
        ("x" * 11, "limit is 10"),
    ):
        with pytest.raises(InvalidInput, match=match):
            validate_text(bad, max_bytes=10)

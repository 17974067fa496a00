"""Image decoding policy (documented in docs/operations.md#media-policy).

* Formats: JPEG, PNG, WebP, GIF (first frame only), BMP. Anything else is rejected.
* The pixel count is checked from the header BEFORE pixels are decoded, so a small file that
  claims 50,000 x 50,000 pixels (a decompression bomb) costs nothing; so is whether the file is
  big enough to hold that many pixels at all (``MAX_PIXELS_PER_BYTE``: a truncated file whose
  header claims 6000 x 6000 is refused before a 108 MB frame is allocated).
* EXIF orientation is applied; transparency is composited onto white (stamps and cut-outs are
  drawn on white, which is also what a person sees in a viewer).
* Output is always 8-bit RGB.
"""

from __future__ import annotations

import io

from PIL import Image, ImageOps, UnidentifiedImageError

from synesthesia.errors import InvalidInput

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")
DEFAULT_MAX_PIXELS = 40_000_000

#: At most this many pixels per byte of file, per format (``plausible_size``): a header that
#: claims more is not backed by data. Each is a floor the format's coding cannot go below, with
#: a margin: Huffman JPEG spends >= 1 bit on every 8x8 luma block even in a progressive DC scan
#: (<= 512 px/byte; 2048 allowed; a flat 6000x6000 progressive JPEG at quality 1 has 255);
#: PNG's deflate expands at most 1032:1, over >= 1 bit per pixel plus a filter byte per row
#: (<= 8256); a GIF LZW code of >= 3 bits emits <= 4096 pixels (<= 10923); lossy WebP (VP8)
#: gets 16384 (a flat 6000x6000 one has 562). Lossless WebP (VP8L) can code a flat image in a
#: few hundred bytes whatever its size, and uncompressed BMP is checked by Pillow before
#: decoding, so neither is bounded here. Without this, a 633-byte JPEG claiming 6000x6000 was
#: decoded as 36 Mpx of grey (libjpeg pads a stream that ends early and only warns).
MAX_PIXELS_PER_BYTE = {"JPEG": 2048, "PNG": 8256, "GIF": 10923, "WEBP": 16384}

# Pillow's own bomb guard is process-global and raises from inside Image.open with a message
# that does not name the size; this module enforces a per-call limit from the header instead.
Image.MAX_IMAGE_PIXELS = None


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode encoded image bytes into an RGB PIL image, or raise InvalidInput saying why."""
    if not data:
        raise InvalidInput("empty image (0 bytes)")
    try:
        img = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except UnidentifiedImageError:
        raise InvalidInput(
            f"not a decodable image ({len(data)} bytes; accepted: JPEG, PNG, WebP, GIF, BMP)"
        ) from None
    except Exception as exc:  # PIL raises many types for malformed headers
        raise InvalidInput(f"not a decodable image: {exc}") from None

    width, height = img.size
    if width <= 0 or height <= 0:
        raise InvalidInput(f"image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise InvalidInput(
            f"image is {width}x{height} = {width * height:,} pixels; the limit is {max_pixels:,}"
        )
    plausible_size(img.format or "", width * height, data)
    try:
        if getattr(img, "n_frames", 1) > 1:
            img.seek(0)  # animated GIF/WebP: the first frame
        img.load()
        upright: Image.Image = ImageOps.exif_transpose(img) or img
    except Exception as exc:  # truncated or corrupt pixel data
        raise InvalidInput(f"corrupt or truncated {img.format or 'image'} data: {exc}") from None
    return to_rgb(upright)


def plausible_size(fmt: str, pixels: int, data: bytes) -> None:
    """InvalidInput if a ``fmt`` file of ``len(data)`` bytes cannot hold ``pixels`` pixels
    (checked before any pixel buffer is allocated)."""
    per_byte = MAX_PIXELS_PER_BYTE.get(fmt)
    if per_byte is None or (fmt == "WEBP" and data[12:16] != b"VP8 "):  # lossless/extended WebP
        return
    needed = -(-pixels // per_byte)
    if len(data) < needed:
        raise InvalidInput(
            f"{fmt} image is truncated: its header declares {pixels:,} pixels, which need at least "
            f"{needed:,} bytes; the file has {len(data):,}"
        )


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB, with any transparency composited onto white."""
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode != "RGB":
        if img.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit greyscale PNG
            img = img.point(lambda v: v / 256).convert("L")
        img = img.convert("RGB")
    return img

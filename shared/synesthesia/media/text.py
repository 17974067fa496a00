"""Text policy: UTF-8, not empty or blank, at most ``max_bytes`` (default 1 MB). Over-long texts
within that limit are truncated by the tokenizer to the model's context, and the truncation is
reported back per item."""

from __future__ import annotations

from synesthesia.errors import InvalidInput

DEFAULT_MAX_TEXT_BYTES = 1_000_000


def validate_text(text: str | bytes, max_bytes: int = DEFAULT_MAX_TEXT_BYTES) -> str:
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"text is not valid UTF-8: {exc}") from None
    if not isinstance(text, str):
        raise InvalidInput(f"expected text, got {type(text).__name__}")
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > max_bytes:
        raise InvalidInput(f"text is {size:,} bytes; the limit is {max_bytes:,} bytes")
    if not text.strip():
        raise InvalidInput("text is empty")
    return text

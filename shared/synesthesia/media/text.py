"""Text policy: UTF-8, not empty or blank, at most ``max_bytes`` (default 1 MB). Over-long texts
within that limit are truncated to the model's context, and the truncation is reported back per
item; only the part of the text that can reach the context is tokenised (``wordpiece_prefix``;
the CLIP tokenizer stops reading after its context)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from typing import Any

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


# --- truncation before tokenisation -----------------------------------------------------------
#
# A model keeps only its first K tokens, but tokenising a 1 MB text costs ~1 s and ~5 MB per
# 1,000 tokens of Python objects it then throws away. No fixed "N characters per token" bound
# exists to cut at (a run of spaces, control characters or accents gives no token at all, and a
# word longer than 100 characters is ONE [UNK]), so the cut is found, not assumed:
#
# A BERT-style (WordPiece) tokenizer normalises character by character (lower-casing, accent
# stripping, control removal, spaces around CJK ideographs) and splits words at whitespace and at
# every punctuation character. Just before such a separator the token sequence of the text is
# the concatenation of the tokens of both sides. So the text is cut at separators into chunks of
# about ``chunk_chars`` characters, their tokens are counted, and the text ends after the chunk
# in which the count passes K: the first K tokens, and the fact that there are more, are exactly
# those of the whole text. The tokenizer reads at most the text up to the first K tokens plus
# one chunk (and the separator-free run in which the chunk ends), instead of all of it.


_CJK_BLOCKS = (  # the blocks BertNormalizer pads with spaces (handle_chinese_chars)
    (0x3400, 0x4DBF),
    (0x4E00, 0x9FFF),
    (0xF900, 0xFAFF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B81F),
    (0x2B920, 0x2CEAF),
    (0x2F800, 0x2FA1F),
)


def wordpiece_separators(tokenizer: Any) -> re.Pattern[str]:
    """Characters before which ``tokenizer`` (a ``tokenizers.Tokenizer`` with a BERT normaliser
    and pre-tokenizer) always starts a new word: whitespace, punctuation and separators of the
    Basic Multilingual Plane and the CJK ideograph blocks, each ASKED of the tokenizer (its
    Unicode tables are not Python's: U+061D is punctuation to Python 3.12, a letter to it), and
    all starters (combining class 0), so normalisation (NFD) never reorders across them."""

    def splits(c: str) -> bool:
        words = tokenizer.pre_tokenizer.pre_tokenize_str(
            tokenizer.normalizer.normalize_str(f"a{c}b")
        )
        return len(words) >= 2 and words[0][0] == "a" and words[-1][0] == "b"

    chars = [
        chr(code)
        for code in range(0x10000)
        if (unicodedata.category(chr(code))[0] in "PZ" or chr(code) in _ASCII_SEPARATORS)
        and _is_starter(chr(code))
        and splits(chr(code))
    ]
    listed = "".join(re.escape(c) for c in chars)
    blocks = "".join(
        f"{chr(a)}-{chr(b)}"
        for a, b in _CJK_BLOCKS
        if all(splits(chr(c)) for c in (a, (a + b) // 2, b))
    )
    return re.compile(f"[{listed}{blocks}]")


_ASCII_SEPARATORS = frozenset("\t\n\r !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")


def _is_starter(c: str) -> bool:
    decomposed = unicodedata.normalize("NFD", c)
    return unicodedata.combining(c) == 0 and all(unicodedata.combining(d) == 0 for d in decomposed)


_BLANK_RUN = re.compile(r"[ \t\n\r]+")


def wordpiece_prefix(
    text: str,
    count_tokens: Callable[[str], int],
    max_tokens: int,
    separators: re.Pattern[str],
    chunk_chars: int = 2048,
) -> str:
    """A text with exactly the tokens of ``text`` as far as its first ``max_tokens`` and at
    least one more (or all of them, if there are no more): the shortest prefix cut at a word
    separator (see above), in which runs of blanks (space, tab, CR, LF) longer than a chunk are
    shortened to one space (they give no token and only split words). ``count_tokens(chunk)``
    counts a chunk's tokens without special tokens (a count capped anywhere above
    ``max_tokens`` is enough); ``separators`` comes from ``wordpiece_separators(tokenizer)``."""
    if len(text) <= chunk_chars:
        return text
    pos, count = 0, 0
    kept: list[str] = []
    while pos < len(text) and count <= max_tokens:
        blank = _BLANK_RUN.match(text, pos)
        if blank and blank.end() - pos > chunk_chars:  # skipped unread
            kept.append(" ")
            pos = blank.end()
            continue
        found = separators.search(text, pos + chunk_chars)
        end = found.start() if found else len(text)
        kept.append(text[pos:end])
        count += count_tokens(kept[-1])
        pos = end
    return "".join(kept)
    pos, count = 0, 0
    while pos < len(text):
        blank = _BLANK_RUN.match(text, pos)  # gives no token and splits words: skipped unread
        if blank and blank.end() - pos > chunk_chars:
            pos = blank.end()
            continue
        found = separators.search(text, pos + chunk_chars)
        end = found.start() if found else len(text)
        count += count_tokens(text[pos:end])
        pos = end
        if count > max_tokens:
            return text[:pos]
    return text

"""CLIP's byte-level BPE tokenizer, as ImageBind uses it (written from the algorithm).

Only the vocabulary file comes from elsewhere: ``bpe_simple_vocab_16e6.txt.gz`` ships inside
the installed ``open_clip_torch`` package and is located WITHOUT importing open_clip (its import
pulls in thousands of modules).

Behaviour that callers may not expect (all reproduced from the reference):
* text is repaired by ftfy, HTML-unescaped twice, whitespace-collapsed and lower-cased;
* a literal ``<|endoftext|>`` in the text becomes the EOT id, and pooling takes the FIRST maximum
  id, so the embedding is read at that position;
* over-long text keeps SOT + 75 tokens and the EOT is always the last of the 77.
"""

from __future__ import annotations

import gzip
import html
import importlib.util
from functools import cache, lru_cache
from pathlib import Path

import ftfy
import regex
import torch

SOT, EOT = "<|startoftext|>", "<|endoftext|>"
_PATTERN = regex.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE,
)
_NUM_MERGES = 49152 - 256 - 2


def default_vocab_path() -> Path:
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "open_clip_torch is not installed; it ships the CLIP BPE vocabulary"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "bpe_simple_vocab_16e6.txt.gz"


@cache
def _bytes_to_unicode() -> dict[int, str]:
    """Every byte maps to a printable character, so BPE works on strings without control bytes."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def _clean(text: str) -> str:
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return regex.sub(r"\s+", " ", text).strip().lower()


class ClipTokenizer:
    """``tokenizer(texts) -> LongTensor [n, 77]``: SOT, BPE ids, EOT, zero padding."""

    def __init__(self, vocab_path: str | Path | None = None, context_length: int = 77) -> None:
        path = Path(vocab_path) if vocab_path is not None else default_vocab_path()
        with gzip.open(path, "rt", encoding="utf-8") as f:
            lines = f.read().split("\n")[1 : _NUM_MERGES + 1]
        merges = [tuple(line.split()) for line in lines]
        byte_chars = list(_bytes_to_unicode().values())
        vocab = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m) for m in merges]
        vocab += [SOT, EOT]
        self.encoder = {tok: i for i, tok in enumerate(vocab)}
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.sot_id, self.eot_id = self.encoder[SOT], self.encoder[EOT]
        self.context_length = context_length
        self._byte_map = _bytes_to_unicode()
        self._bpe = lru_cache(maxsize=65536)(self._bpe_uncached)

    def _bpe_uncached(self, token: str) -> tuple[str, ...]:
        if token in (SOT, EOT):
            return (token,)
        word = (*token[:-1], token[-1] + "</w>")
        while len(word) > 1:
            pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            merged: list[str] = []
            i = 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = tuple(merged)
        return word

    def encode(self, text: str, limit: int | None = None) -> list[int]:
        """BPE ids of ``text`` without SOT/EOT and without truncation, or, with ``limit``, its
        first ids up to at least ``limit`` of them (exactly the same ids as far as they go):
        pieces are BPE-encoded one by one and reading stops there, so a 1 MB text costs its
        cleaning, not ~200k BPE tokens."""
        ids: list[int] = []
        for match in _PATTERN.finditer(_clean(text)):
            chars = "".join(self._byte_map[b] for b in match.group().encode("utf-8"))
            ids.extend(self.encoder[t] for t in self._bpe(chars))
            if limit is not None and len(ids) >= limit:
                break
        return ids

    def encode_padded(self, text: str) -> tuple[torch.Tensor, bool]:
        """One row of 77 ids and whether the text was truncated."""
        ids = [self.sot_id, *self.encode(text, limit=self.context_length - 1)]
        truncated = len(ids) + 1 > self.context_length
        ids = [*ids[: self.context_length - 1], self.eot_id]
        row = torch.zeros(self.context_length, dtype=torch.long)
        row[: len(ids)] = torch.tensor(ids, dtype=torch.long)
        return row, truncated

    def __call__(self, texts: str | list[str]) -> torch.Tensor:
        if isinstance(texts, str):
            texts = [texts]
        return torch.stack([self.encode_padded(t)[0] for t in texts])

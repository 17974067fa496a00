"""WordNet's noun database (Debian's ``wordnet-base``: ``/usr/share/wordnet/data.noun``) as
captions richer than a class name: a synset's synonyms, its gloss and its hypernym chain.

Used at training time only (``SYNESTHESIA_WORDNET`` or ``/usr/share/wordnet``); the shipped
model does not need it. An ImageNet ``wnid`` is ``n`` + the synset's offset in ``data.noun``."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Synset:
    words: tuple[str, ...]
    hypernyms: tuple[str, ...]  # offsets ("@" and instance "@i" pointers)
    gloss: str


def wordnet_dir() -> Path:
    return Path(os.environ.get("SYNESTHESIA_WORDNET", "/usr/share/wordnet"))


def load_nouns(path: Path | None = None) -> dict[str, Synset]:
    """offset -> Synset, parsed from a ``data.noun`` file (the format of wndb(5WN))."""
    path = path or wordnet_dir() / "data.noun"
    if not path.is_file():
        raise FileNotFoundError(
            f"WordNet's data.noun not found at {path}: apt-get install wordnet-base, or set "
            "SYNESTHESIA_WORDNET to the folder that holds it"
        )
    out = {}
    for line in path.read_text(encoding="latin-1").splitlines():
        if not line or line.startswith(" "):
            continue
        head, _, gloss = line.partition(" | ")
        f = head.split()
        n = int(f[3], 16)
        words = tuple(f[4 + 2 * i].replace("_", " ") for i in range(n))
        words = tuple(re.sub(r"\(\w+\)$", "", w) for w in words)  # "(a)" / "(p)" markers
        k = 4 + 2 * n
        ptrs = [f[k + 1 + 4 * i : k + 4 + 4 * i] for i in range(int(f[k]))]
        hyper = tuple(o for sym, o, pos in ptrs if sym in ("@", "@i") and pos == "n")
        out[f[0]] = Synset(words, hyper, gloss.strip())
    return out


def definition(gloss: str) -> str:
    """The gloss without its quoted examples: 'domestic swine; "pigs eat..."' -> 'domestic
    swine'."""
    return gloss.split('; "')[0].split(' "')[0].strip().rstrip(";").strip()


def article(word: str) -> str:
    """'a' or 'an' + ``word`` (by its first letter)."""
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"


def hypernym_chain(nouns: dict[str, Synset], offset: str, depth: int) -> list[str]:
    """The first hypernym's offsets, nearest first, up to ``depth`` levels."""
    chain: list[str] = []
    cur = offset
    while len(chain) < depth and nouns[cur].hypernyms:
        cur = nouns[cur].hypernyms[0]
        chain.append(cur)
    return chain


def class_texts(
    nouns: dict[str, Synset], wnid: str, banned: set[str], depth: int = 3
) -> tuple[list[str], list[str]]:
    """(names, captions) of an ImageNet class: its synonyms (to be put into prompt templates),
    and literal captions from its gloss and hypernyms ("a hog, domestic swine.", "a hog, a kind
    of swine."). Any word in ``banned`` (lower case: other classes' names that must not be
    trained on) is left out, as is a hypernym whose synonyms include one."""
    syn = nouns[wnid[1:]]
    names = [w for w in syn.words if w.lower() not in banned]
    if not names:
        return [], []
    first = article(names[0])
    caps = []
    gloss = definition(syn.gloss)
    if gloss and not any(re.search(rf"\b{re.escape(b)}\b", gloss.lower()) for b in banned):
        caps += [f"{first}, {gloss}.", f"a photo of {first}: {gloss}."]
    for off in hypernym_chain(nouns, wnid[1:], depth):
        words = nouns[off].words
        if any(w.lower() in banned for w in words):
            continue
        caps += [f"{first}, a kind of {words[0]}.", f"a photo of {article(words[0])}."]
    return names, list(dict.fromkeys(caps))

"""WordNet's noun database (Debian's ``wordnet-base``: ``/usr/share/wordnet/data.noun``) as
captions richer than a class name: a synset's synonyms, its gloss and its hypernym chain.

Used at training time only (``SYNESTHESIA_WORDNET`` or ``/usr/share/wordnet``); the shipped
model does not need it. An ImageNet ``wnid`` is ``n`` + the synset's offset in ``data.noun``."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np


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


# Physical things a picture can show: artifact, organism, food, natural object.
THING_ROOTS = ("00021939", "00004475", "00021265", "00019128")


def ancestors(
    nouns: dict[str, Synset], offset: str, memo: dict[str, frozenset[str]]
) -> frozenset[str]:
    """Every hypernym of ``offset`` along every path (not ``offset`` itself)."""
    if offset not in memo:
        memo[offset] = frozenset()  # (a cycle guard; WordNet's noun graph has none)
        found: set[str] = set()
        for up in nouns[offset].hypernyms:
            found.add(up)
            found |= ancestors(nouns, up, memo)
        memo[offset] = frozenset(found)
    return memo[offset]


def distractors(
    nouns: dict[str, Synset], clear: set[str], banned: set[str], count: int, seed: int
) -> list[tuple[str, str]]:
    """``count`` (offset, word) pairs of things a picture can show (``THING_ROOTS``), drawn with
    ``seed``, that are none of the synsets ``clear`` (offsets: the classes trained on and the
    unseen ones), nor their kinds or their ancestors, and whose words are not ``banned``: names
    a picture must *not* be near, so that the tower places pictures among many words, not only
    among its training classes. Common nouns only (a sense that is tagged in WordNet's
    corpus, ``noun_senses``), of at most three words."""
    senses = noun_senses()
    memo: dict[str, frozenset[str]] = {}
    near = set(clear)
    for off in clear:
        near |= ancestors(nouns, off, memo)
    roots = set(THING_ROOTS)
    seen: set[str] = set()
    pool = []
    for off in sorted(nouns):
        up = ancestors(nouns, off, memo)
        if off in near or not (up & roots) or up & set(clear):
            continue
        word = nouns[off].words[0]
        if (
            not re.fullmatch(r"[a-z][a-z\- ]*[a-z]", word)
            or word.count(" ") > 2
            or any(w.lower() in banned for w in nouns[off].words)
            or word in seen
            or off not in _common(senses, word)
        ):
            continue
        seen.add(word)
        pool.append((off, word))
    pick = np.random.default_rng(seed).permutation(len(pool))[:count]
    return [pool[i] for i in sorted(pick)]


def _common(senses: dict[str, tuple[list[str], int]], word: str) -> list[str]:
    offsets, tagged = senses.get(word, ([], 0))
    return offsets[:tagged]


def noun_senses(path: Path | None = None) -> dict[str, tuple[list[str], int]]:
    """word -> (the offsets of all its noun senses, most common first; how many of the first
    were seen in WordNet's semantic concordance, ``tagsense_cnt``: its common meanings), from
    ``index.noun``."""
    path = path or wordnet_dir() / "index.noun"
    out: dict[str, tuple[list[str], int]] = {}
    for line in path.read_text(encoding="latin-1").splitlines():
        if not line or line.startswith(" "):
            continue
        f = line.split()
        p_cnt = int(f[3])
        out[f[0].replace("_", " ")] = (f[6 + p_cnt :], int(f[5 + p_cnt]))
    return out

"""Prompts with planted families: the truth prompt-family search is measured against.

Each family is one idea reworded as people iterate on it: a base prompt of 6 to 14 words, each
variant a word or two changed, inserted, dropped or swapped, or a style tag added. Singles are
ideas tried once. Every prompt may carry the boilerplate of real prompts ("highly detailed",
"cinematic lighting" …), which links unrelated ideas by a few words: the hard negatives.
Deterministic for a seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

_CONSONANTS = "bcdfghjklmnprstvz"
_VOWELS = "aeiou"
BOILERPLATE = (
    "highly detailed",
    "cinematic lighting",
    "8k",
    "octane render",
    "trending on artstation",
    "volumetric fog",
    "golden hour",
    "studio photography",
    "soft pastel colors",
    "35mm film grain",
)


@dataclass(frozen=True)
class PlantedPrompt:
    prompt: str
    family: int  # -1 for a single (in no family)


def _vocabulary(rng: random.Random, size: int) -> list[str]:
    words: set[str] = set()
    while len(words) < size:
        syllables = rng.randint(2, 4)
        words.add("".join(rng.choice(_CONSONANTS) + rng.choice(_VOWELS) for _ in range(syllables)))
    return sorted(words)


def _variant(rng: random.Random, words: list[str], vocab: list[str]) -> list[str]:
    words = list(words)
    for _ in range(rng.choice((1, 1, 2))):
        edit = rng.random()
        at = rng.randrange(len(words))
        if edit < 0.35:
            words[at] = rng.choice(vocab)
        elif edit < 0.55:
            words.insert(at, rng.choice(vocab))
        elif edit < 0.7 and len(words) > 4:
            del words[at]
        elif edit < 0.85 and at + 1 < len(words):
            words[at], words[at + 1] = words[at + 1], words[at]
        else:
            words += rng.choice(BOILERPLATE).split()
    return words


def planted_prompts(
    seed: int, families: int, size: int, singles: int, *, vocabulary: int = 20_000
) -> list[PlantedPrompt]:
    """``families`` families of ``size`` prompts each (a family's first is its base) and
    ``singles`` prompts of no family, shuffled."""
    rng = random.Random(seed)
    vocab = _vocabulary(rng, vocabulary)
    out: list[PlantedPrompt] = []

    def dressed(words: list[str]) -> str:
        tags = rng.sample(BOILERPLATE, rng.choice((0, 0, 1, 2)))
        return ", ".join([" ".join(words), *tags])

    for family in range(families):
        base = [rng.choice(vocab) for _ in range(rng.randint(6, 14))]
        out.append(PlantedPrompt(dressed(base), family))
        for _ in range(size - 1):
            out.append(PlantedPrompt(dressed(_variant(rng, base, vocab)), family))
    for _ in range(singles):
        words = [rng.choice(vocab) for _ in range(rng.randint(4, 14))]
        out.append(PlantedPrompt(dressed(words), -1))
    rng.shuffle(out)
    return out


def pair_scores(truth: list[int], found: list[int]) -> tuple[float, float]:
    """(precision, recall) over pairs of prompts put in one family: ``truth`` and ``found``
    give each prompt's family (-1: none), by position."""
    from collections import Counter

    def pairs(labels: list[int]) -> int:
        return sum(n * (n - 1) // 2 for label, n in Counter(labels).items() if label != -1)

    both = Counter((t, f) for t, f in zip(truth, found, strict=True) if t != -1 and f != -1)
    together = sum(n * (n - 1) // 2 for n in both.values())
    found_pairs, true_pairs = pairs(found), pairs(truth)
    precision = together / found_pairs if found_pairs else 1.0
    recall = together / true_pairs if true_pairs else 1.0
    return precision, recall

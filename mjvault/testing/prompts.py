"""Realistic Midjourney prompts and parameter strings, drawn from a seeded ``random.Random``.

The mix is what an archive of a real account holds and what parsers trip over: plain English,
emoji, CJK, newlines, ``--`` inside words (``sci--fi``), image-prompt URLs, multi-prompts with
``::`` weights, and a few prompts thousands of characters long.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

SUBJECTS = (
    "a red fox in the snow",
    "portrait of an old fisherman",
    "a lighthouse on a cliff",
    "two people running in the playground",
    "a cyberpunk street market",
    "an astronaut cat",
    "a bowl of ramen",
    "a cathedral made of glass",
    "a tiny dragon sleeping on a book",
    "a vintage racing car",
    "a koi pond at dawn",
    "a brutalist library",
    "a jellyfish forest",
    "an elderly woman knitting",
    "a steampunk owl",
    "a desert caravan",
    "a modern n64 console",
    "a mountain village in autumn",
    "a samurai in the rain",
    "a greenhouse on mars",
)
DETAILS = (
    "cinematic lighting",
    "volumetric fog",
    "golden hour",
    "soft pastel colors",
    "highly detailed",
    "35mm film grain",
    "studio photography",
    "watercolor",
    "ukiyo-e style",
    "octane render",
    "isometric",
    "hard rim lighting",
    "bokeh",
    "muted tones",
    "oil painting",
    "line art",
    "children's book illustration",
    "tilt-shift",
    "long exposure",
    "8k",
)
EMOJI = ("🦊", "🌸", "🚀", "🐉", "✨", "🍜", "🌊", "🔥", "🎨", "👁️‍🗨️")
CJK = ("桜の木の下で眠る猫", "山水画风格的城市", "용의 꿈", "夜の東京、ネオン", "水墨画 龙")
HYPHENATED = ("sci--fi", "neo--noir", "retro--futurism", "lo--fi")
ASPECTS = ("1:1", "16:9", "9:16", "2:3", "3:2", "4:5", "21:9", "3:4")
NEGATIVES = ("trees", "text", "people", "cars, signs", "blur")


@dataclass(frozen=True)
class Generation:
    """A Midjourney model family: its ``--v``/``--niji`` flag and its job-type prefix."""

    flag: str  # "--v 5.2", "--niji 6"
    job_type_prefix: str  # "v5", "v6", "niji6"
    version_number: float
    base_side: int  # long side of a full-size image in pixels
    has_virtual_upsample: bool
    has_draft: bool


GENERATIONS = (
    Generation("--v 4", "v4", 4, 512, False, False),
    Generation("--v 5", "v5", 5, 1024, True, False),
    Generation("--v 5.1", "v5", 5.1, 1024, True, False),
    Generation("--v 5.2", "v5", 5.2, 1024, True, False),
    Generation("--niji 5", "niji5", 5, 1024, True, False),
    Generation("--v 6", "v6", 6, 1024, True, False),
    Generation("--v 6.1", "v6", 6.1, 1024, True, False),
    Generation("--niji 6", "niji6", 6, 1024, True, False),
    Generation("--v 7", "v7", 7, 1024, True, True),
)

# (share of the account's timeline where a generation starts, generation index): v4 first,
# v7 last, niji alongside its contemporaries.
_TIMELINE = (
    (0.0, (0,)),
    (0.15, (1, 2, 4)),
    (0.25, (3, 4)),
    (0.35, (5, 7)),
    (0.55, (6, 7)),
    (0.75, (8, 6)),
)


def generation_at(fraction: float, rng: random.Random) -> Generation:
    """The model family in use ``fraction`` of the way through the account's history."""
    choices: tuple[int, ...] = _TIMELINE[0][1]
    for start, indices in _TIMELINE:
        if fraction >= start:
            choices = indices
    # The first listed family is the usual one; the others appear now and then.
    index = choices[0] if rng.random() < 0.8 or len(choices) == 1 else rng.choice(choices[1:])
    return GENERATIONS[index]


def make_prompt(rng: random.Random) -> str:
    roll = rng.random()
    base = f"{rng.choice(SUBJECTS)}, {rng.choice(DETAILS)}"
    if roll < 0.01:
        # Thousands of characters: people paste whole descriptions.
        sentences = [f"{rng.choice(SUBJECTS)} with {rng.choice(DETAILS)}" for _ in range(60)]
        return ". ".join(sentences)[: rng.randint(2000, 5000)]
    if roll < 0.06:
        return f"{base} {rng.choice(EMOJI)}{rng.choice(EMOJI)}"
    if roll < 0.11:
        return f"{rng.choice(CJK)}, {rng.choice(DETAILS)}"
    if roll < 0.14:
        return f"{base},\n{rng.choice(DETAILS)}\n{rng.choice(DETAILS)}"
    if roll < 0.18:
        return f"{rng.choice(HYPHENATED)} {base}"
    if roll < 0.21:
        token = "".join(rng.choice("abcdefghijkmnpqrstuvwxyz0123456789") for _ in range(10))
        return f"https://s.mj.run/{token} {base}"
    if roll < 0.23:
        return f"{rng.choice(SUBJECTS)}::2 {rng.choice(DETAILS)}::1"
    return f"{base}, {rng.choice(DETAILS)}"


def make_parameters(rng: random.Random, generation: Generation, *, draft: bool) -> tuple[str, str]:
    """``(parameter text, aspect ratio)`` for a fresh job of ``generation``."""
    parts: list[str] = []
    aspect = rng.choice(ASPECTS) if rng.random() < 0.6 else "1:1"
    if aspect != "1:1":
        parts.append(f"--ar {aspect}")
    if rng.random() < 0.85:  # the default version is often left implicit
        parts.append(generation.flag)
    if rng.random() < 0.4:
        parts.append(f"--s {rng.choice((0, 50, 100, 250, 500, 750, 1000))}")
    if generation.version_number >= 5.1 and rng.random() < 0.3:
        parts.append("--style raw")
    if rng.random() < 0.15:
        parts.append(f"--chaos {rng.choice((5, 10, 20, 50, 100))}")
    if rng.random() < 0.1:
        parts.append(f"--q {rng.choice((0.5, 1, 2))}")
    if rng.random() < 0.04:
        parts.append("--tile")
    if generation.version_number >= 6 and rng.random() < 0.1:
        parts.append(f"--weird {rng.choice((50, 250, 500, 1000))}")
    if rng.random() < 0.08:
        parts.append(f"--no {rng.choice(NEGATIVES)}")
    if rng.random() < 0.05:
        parts.append(f"--seed {rng.randint(0, 4294967295)}")
    if generation.version_number >= 6 and rng.random() < 0.06:
        parts.append(f"--sref {rng.randint(10**8, 10**10)}")
    if generation.job_type_prefix == "v7" and rng.random() < 0.2:
        parts.append("--p")
    if draft:
        parts.append("--draft")
    return " ".join(parts), aspect


def dimensions(aspect: str, long_side: int) -> tuple[int, int]:
    """``(width, height)`` of a full-size image with ``aspect`` and ``long_side`` pixels."""
    w_ratio, h_ratio = (int(part) for part in aspect.split(":"))
    if w_ratio >= h_ratio:
        return long_side, max(1, round(long_side * h_ratio / w_ratio / 8) * 8)
    return max(1, round(long_side * w_ratio / h_ratio / 8) * 8), long_side

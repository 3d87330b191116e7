"""Tokenization: the one-regex tokenizer splits exactly as the rule in its docstring says."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from mjvault.testing.prompts import make_prompt
from mjvault.text import fold, normalize, search_tokens, tokenize


def _is_unspaced(char: str) -> bool:
    code = ord(char)
    return (
        0x3040 <= code <= 0x30FF
        or 0x3400 <= code <= 0x4DBF
        or 0x4E00 <= code <= 0x9FFF
        or 0xF900 <= code <= 0xFAFF
        or 0x0E00 <= code <= 0x0E7F
        or 0x20000 <= code <= 0x2FA1F
    )


def reference_tokenize(text: str) -> list[str]:
    """The rule spelled out: ``\\w+`` runs, each unspaced-script character its own token."""
    tokens: list[str] = []
    for match in re.finditer(r"\w+", normalize(text)):
        run = ""
        for char in match.group(0):
            if _is_unspaced(char):
                if run:
                    tokens.append(run[:64])
                    run = ""
                tokens.append(char)
            else:
                run += char
        if run:
            tokens.append(run[:64])
    return tokens


_mixed = st.text(
    alphabet=st.one_of(
        st.characters(),
        st.sampled_from("猫耳の少女ネオン・ゞ゙゚ภาษาไทย𠀀é́ ,-_'"),
    ),
    max_size=80,
)


@settings(max_examples=400)
@given(_mixed)
def test_tokenize_follows_the_rule(text: str) -> None:
    assert tokenize(text) == reference_tokenize(text)


def test_generated_prompts_tokenize_by_the_rule() -> None:
    import random

    rng = random.Random(5)
    for _ in range(300):
        prompt = make_prompt(rng)
        assert tokenize(prompt) == reference_tokenize(prompt)


def test_examples() -> None:
    assert tokenize("Ｆｏｘ, sci--fi 猫耳") == ["fox", "sci", "fi", "猫", "耳"]
    assert search_tokens("Café CRÈME がぎ") == ["cafe", "creme", "が", "ぎ"]
    assert fold("naïve") == "naive" and fold("がぎ") == "がぎ"

"""Prompt text normalisation for full-text search. Pure.

Words are NFKC-normalised and case-folded, so "Ｆｏｘ", "FOX" and "fox" match; accents are
kept by ``tokenize`` (they change meaning in many languages), and ``fold`` removes them where
search wants "cafe" to find "café". Scripts written without spaces (Han, Hiragana,
Katakana, Thai …) have no word boundaries to split on, so each of their characters is a
token and a query for 猫耳 matches as the two characters in sequence would.
"""

from __future__ import annotations

import re
import unicodedata

_WORD = re.compile(r"\w+", re.UNICODE)
_MAX_TOKEN = 64  # longer "words" are URLs or noise; cut them so index keys stay small


def _is_unspaced(char: str) -> bool:
    code = ord(char)
    return (
        0x3040 <= code <= 0x30FF  # Hiragana, Katakana
        or 0x3400 <= code <= 0x4DBF  # CJK extension A
        or 0x4E00 <= code <= 0x9FFF  # CJK unified
        or 0xF900 <= code <= 0xFAFF  # CJK compatibility
        or 0x0E00 <= code <= 0x0E7F  # Thai
        or 0x20000 <= code <= 0x2FA1F  # CJK extensions B+
    )


def normalize(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def tokenize(text: str) -> list[str]:
    """The searchable words of ``text``, in order, duplicates kept."""
    tokens: list[str] = []
    for match in _WORD.finditer(normalize(text)):
        word = match.group(0)
        if any(_is_unspaced(c) for c in word):
            run = ""
            for char in word:
                if _is_unspaced(char):
                    if run:
                        tokens.append(run[:_MAX_TOKEN])
                        run = ""
                    tokens.append(char)
                else:
                    run += char
            if run:
                tokens.append(run[:_MAX_TOKEN])
        else:
            tokens.append(word[:_MAX_TOKEN])
    return tokens


def fold(token: str) -> str:
    """``token`` without its combining accents (U+0300–U+036F): "café" -> "cafe".

    Only the general diacritics are removed: the kana voicing marks (U+3099, U+309A) and
    other script-specific marks change the letter itself and stay.
    """
    if token.isascii():
        return token
    decomposed = unicodedata.normalize("NFD", token)
    stripped = "".join(c for c in decomposed if not 0x0300 <= ord(c) <= 0x036F)
    return unicodedata.normalize("NFC", stripped)


def search_tokens(text: str) -> list[str]:
    """The tokens search compares: ``tokenize`` then ``fold``."""
    return [fold(token) for token in tokenize(text)]

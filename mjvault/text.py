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

_MAX_TOKEN = 64  # longer "words" are URLs or noise; cut them so index keys stay small


# Hiragana and Katakana, CJK extension A, unified and compatibility ideographs, Thai, and
# CJK extensions B and later: scripts written without spaces between words.
_UNSPACED_CLASS = (
    "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u0e00-\u0e7f\U00020000-\U0002fa1f"
)
# One regex does what splitting ``\w+`` runs at unspaced characters does, in C: a word
# character of an unspaced script alone, or a run of the other word characters.
_TOKEN = re.compile(f"(?=\\w)[{_UNSPACED_CLASS}]|[^\\W{_UNSPACED_CLASS}]+")


def normalize(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def tokenize(text: str) -> list[str]:
    """The searchable words of ``text``, in order, duplicates kept."""
    return [token[:_MAX_TOKEN] for token in _TOKEN.findall(normalize(text))]


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

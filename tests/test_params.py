"""Parameters parsed from full_command: aliases, values, and robustness on any text."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mjvault.params import ALIASES, parse_full_command


def test_aliases_and_values() -> None:
    parsed = parse_full_command("a red fox --ar 16:9 --v 6.1 --s 250 --style raw --no trees, cars")
    assert parsed.prompt == "a red fox"
    assert parsed.params == {
        "ar": "16:9",
        "version": "6.1",
        "stylize": 250,
        "style": "raw",
        "no": "trees, cars",
    }


def test_flags_em_dash_and_dashes_inside_words() -> None:
    parsed = parse_full_command("sci--fi city\u2014ar 3:2 --tile --niji 6 --q .5 --chaos 20")
    assert parsed.prompt == "sci--fi city\u2014ar 3:2"  # no space before the em dash: a word
    assert parsed.params == {"tile": True, "niji": "6", "quality": 0.5, "chaos": 20}
    phone = parse_full_command("a cat \u2014ar 16:9 \u2014v 7")
    assert phone.params == {"ar": "16:9", "version": "7"}


def test_last_value_wins_and_raw_is_style() -> None:
    assert parse_full_command("x --v 5 --v 6 --raw").params == {"version": "6", "style": "raw"}


names = st.sampled_from(sorted(ALIASES))
values = st.one_of(
    st.just(""),
    st.integers(0, 5000).map(str),
    st.from_regex(r"[a-z0-9:.]{1,8}", fullmatch=True),
)


@given(
    st.text(alphabet=st.characters(blacklist_characters="-\u2014\u2013"), max_size=80),
    st.lists(st.tuples(names, values), max_size=6),
)
def test_generated_commands_parse_back(prompt: str, pairs: list[tuple[str, str]]) -> None:
    command = prompt + "".join(f" --{name} {value}".rstrip() for name, value in pairs)
    parsed = parse_full_command(command)
    assert parsed.prompt == " ".join(prompt.split())
    expected_names = {ALIASES[name] if ALIASES[name] != "raw" else "style" for name, _ in pairs}
    assert set(parsed.params) == expected_names


@given(st.text(max_size=300))
def test_any_text_parses_without_error(text: str) -> None:
    parsed = parse_full_command(text)
    assert isinstance(parsed.prompt, str)
    assert all(isinstance(k, str) and k for k in parsed.params)

from mjvault.params import parse_full_command


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

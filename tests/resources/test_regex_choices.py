"""Choices encoded as a regex alternation, and read back."""

import re

from resources.regex_choices import choices_regex, literal_alternatives


def test_round_trip_with_special_characters() -> None:
    choices = ["low", "high+", "a.b", "x|y", "(paren)"]
    regex = choices_regex(choices)
    assert literal_alternatives(regex) == choices
    assert all(re.fullmatch(regex, c) for c in choices)
    assert re.fullmatch(regex, "lowx") is None


def test_other_regexes_are_not_alternatives() -> None:
    assert literal_alternatives(r"\d{4}") is None
    assert literal_alternatives("[ab]+") is None

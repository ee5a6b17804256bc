"""The approximate token count shared by the offline model and the test double."""

from resources.token_count import count_tokens, split_tokens, truncate_to_tokens


def test_words_and_punctuation_are_tokens() -> None:
    assert split_tokens("Hi, you!") == ["Hi", ",", "you", "!"]
    assert count_tokens("  ") == 0


def test_truncation_keeps_whole_tokens() -> None:
    assert truncate_to_tokens("a b c", 2) == ("a b", True)
    assert truncate_to_tokens("a b", 5) == ("a b", False)
    assert truncate_to_tokens("a", 0) == ("", True)

"""A simple, model-free token count shared by the offline model and the SGLang test double.

Neither has a real tokenizer, so both count "tokens" the same approximate way: a run of word
characters is one token and every other non-space character is one token. It is stable and
cheap; it is not what any real model's tokenizer would report.
"""

from __future__ import annotations

import re

_TOKEN = re.compile(r"\w+|[^\w\s]")


def split_tokens(text: str) -> list[str]:
    """Split text into approximate tokens (word runs and single punctuation characters).

    Example:
        >>> split_tokens("Hello, world!")
        ['Hello', ',', 'world', '!']
    """
    return _TOKEN.findall(text)


def count_tokens(text: str) -> int:
    """Count approximate tokens in text, the way `split_tokens` splits it."""
    return len(_TOKEN.findall(text))


def truncate_to_tokens(text: str, max_tokens: int) -> tuple[str, bool]:
    """Cut text after its first `max_tokens` approximate tokens.

    Returns:
        The (possibly shortened) text and whether it was cut.
    """
    if max_tokens <= 0:
        return "", bool(text)
    end = None
    for index, match in enumerate(_TOKEN.finditer(text)):
        if index == max_tokens:
            return text[:end], True
        end = match.end()
    return text, False

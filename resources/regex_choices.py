"""Choices as a regex alternation: how a choices call is constrained on SGLang, and read back.

SGLang's HTTP API has no `choices` parameter (its frontend's `select` is not an HTTP feature),
so a choices call is sent as the regex `(a|b|c)` of the escaped choices, which SGLang's grammar
backend enforces. `literal_alternatives` reads such a regex back into its choices.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_SPECIAL = set(".^$*+?{}[]|()\\")


def choices_regex(choices: Sequence[str]) -> str:
    """Build the regex alternation that admits exactly one of `choices`.

    Example:
        >>> choices_regex(["low", "high+"])
        '(low|high\\\\+)'
    """
    return "(" + "|".join(re.escape(choice) for choice in choices) + ")"


def literal_alternatives(regex: str) -> list[str] | None:
    """Return the literals of a regex like `(a|b\\-c)`, or None if it is anything else.

    Example:
        >>> literal_alternatives(r"(low|high\\+)")
        ['low', 'high+']
        >>> literal_alternatives(r"\\d+") is None
        True
    """
    body = regex
    if body.startswith("^"):
        body = body[1:]
    if body.endswith("$") and not body.endswith("\\$"):
        body = body[:-1]
    if body.startswith("(") and body.endswith(")"):
        body = body[1:-1]
    out: list[str] = []
    current: list[str] = []
    chars = iter(body)
    for char in chars:
        if char == "\\":
            escaped = next(chars, "")
            if escaped.isalnum():
                return None  # a class such as \d, not a literal
            current.append(escaped)
        elif char == "|":
            out.append("".join(current))
            current = []
        elif char in _SPECIAL:
            return None
        else:
            current.append(char)
    out.append("".join(current))
    return out

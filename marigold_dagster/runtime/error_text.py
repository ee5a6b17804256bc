"""Error text without file content: what a step failure may say about a file it could not read.

Arrow's CSV reader quotes the offending line or value in its errors ("CSV parse error: Expected
2 columns, got 1: <the line>", "invalid value '<the value>'"), and those errors reach the step
failure, the event log and every GraphQL client that reads it. `without_file_content` keeps
what went wrong and where, and drops the quoted content.

    >>> without_file_content("CSV parse error: Expected 2 columns, got 1: root:x:0:0")
    'CSV parse error: Expected 2 columns, got 1: (the line is not shown)'
"""

from __future__ import annotations

import re

_PARSE_ERROR = re.compile(r"(CSV parse error: [^:\n]*?(?:got \d+|columns))(?:: .*)", re.DOTALL)
_INVALID_VALUE = re.compile(r"(invalid value) '.*?'(?=$|[\s,;)])", re.DOTALL)
_ROW_TEXT = re.compile(r"(CSV parse error: [^:\n]*):\s.*", re.DOTALL)


def without_file_content(message: str) -> str:
    """`message` with any line or value quoted from a file replaced by a placeholder."""
    cleaned = _PARSE_ERROR.sub(r"\1: (the line is not shown)", message)
    if cleaned == message:
        cleaned = _ROW_TEXT.sub(r"\1: (the line is not shown)", message)
    return _INVALID_VALUE.sub(r"\1 (not shown)", cleaned)

"""The JSON nesting check reads hostile bodies in one pass and still counts correctly.

An allowed host can answer with text made to slow a backtracking scan: a quote followed by
escaped quotes and no closing quote made the old check quadratic (80 KB: tens of seconds). The
check runs in a child process with a generous limit, so a regression fails instead of hanging;
timings themselves live in bench/bench_json_depth.py.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from grammar_ops.primitives.acquire import MAX_JSON_DEPTH, json_depth

HOSTILE = {
    "escaped-quotes": "b'[' * 101 + b'\"' + b'\\\\\"' * 500_000",
    "lone-quotes-and-backslashes": "b'[' * 101 + b'\"\\\\' * 500_000",
    "open-strings": "b'[' * 101 + b'\"a\\\\\"' * 250_000",
}


@pytest.mark.parametrize(
    "tail", [b'"unterminated [[[[', b'"ends in a backslash [[\\', b'"\\"\\"\\"[[']
)
def test_an_unterminated_string_runs_to_the_end(tail):
    assert json_depth(b"[" * 101 + tail) == 101


@pytest.mark.slow  # each case runs in a child process, so a hang cannot stall the suite
@pytest.mark.parametrize("body", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_one_megabyte_hostile_body_is_checked_in_one_pass(body):
    code = (
        "from grammar_ops.primitives.acquire import json_depth\n"
        f"body = {body}\n"
        "assert len(body) >= 1_000_000, len(body)\n"
        "print(json_depth(body))\n"
    )
    # Linear: well under a second. Quadratic: about an hour. The limit only separates the two.
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert int(done.stdout) == 101  # the unterminated string hides nothing after it


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        (b'[["]]]]"]]', 2),
        (b'[["\\\\"]]', 2),  # an escaped backslash ends before the quote
        (b'[["\\"[[[["]]', 2),  # an escaped quote does not end the string
        (b"[" * 300 + b"]" * 300, 300),
    ],
)
def test_depth_is_counted_outside_strings(text, depth):
    # Padded past MAX_JSON_DEPTH brackets, so the scan runs instead of the quick upper bound.
    pad = MAX_JSON_DEPTH + 1
    assert json_depth(b"[" * pad + text + b"]" * pad) == pad + depth

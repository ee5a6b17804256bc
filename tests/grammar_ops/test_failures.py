"""Failures say at the source whether retrying can fix them (`grammar_ops.failures`)."""

from __future__ import annotations

import pytest

from grammar_ops import (
    ConfigurationError,
    ExpressionError,
    Kind,
    ModelError,
    PrimitiveError,
    StepTimeout,
    TransientError,
    is_transient,
    standard_catalog,
)
from grammar_ops.failures import transient_status


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (TransientError("host unreachable"), True),
        (StepTimeout("ran past its timeout"), True),
        (ModelError("HTTP 503 after 5 attempts", retryable=True), True),
        (ConnectionResetError("reset by peer"), True),
        (OSError("disk I/O error"), True),
        (ModelError("answer cut at max_new_tokens"), False),
        (ConfigurationError("unknown field `text`"), False),
        (ExpressionError("bad expression"), False),
        (PrimitiveError("rows cannot form a table"), False),
        (FileNotFoundError("no such file"), False),
        (KeyError("text"), False),
    ],
)
def test_is_transient(error: BaseException, transient: bool) -> None:
    assert is_transient(error) is transient


@pytest.mark.parametrize(
    ("status", "transient"),
    [(500, True), (503, True), (429, True), (408, True), (400, False), (404, False)],
)
def test_transient_status(status: int, transient: bool) -> None:
    assert transient_status(status) is transient


def test_a_webhook_answering_5xx_is_transient(make_ctx, http_server) -> None:
    composition = standard_catalog().resolve(
        "emit.webhook", {"url": http_server.url("/fail")}, input_kind=Kind.JSON
    )
    ctx = make_ctx(allowed_hosts=frozenset({"127.0.0.1"}))
    with pytest.raises(TransientError, match="answered HTTP 500"):
        composition.run({"a": 1}, ctx)


def test_http_json_timing_out_is_transient(make_ctx, http_server) -> None:
    composition = standard_catalog().resolve(
        "acquire.http_json",
        {"url": http_server.url("/slow"), "timeout_s": 0.3},
        input_kind=Kind.JSON,
    )
    ctx = make_ctx(allowed_hosts=frozenset({"127.0.0.1"}))
    with pytest.raises(TransientError, match="timed out"):
        composition.run({}, ctx)

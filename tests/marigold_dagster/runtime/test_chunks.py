"""A batch merge catching up chunks that never reported: tries and waits under `retry:`."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from dagster import Failure

from grammar_ops import retrying
from marigold_dagster.keys import StepStatus
from marigold_dagster.runtime import chunks
from marigold_dagster.runtime.chunks import ChunkOutcome, ChunkSpec, _catch_up
from marigold_dagster.template.model import RetrySpec


class FlakyChunks:
    """`process_chunk` failing transiently `failures` times per chunk, then succeeding."""

    def __init__(self, failures: int, *, allow_retries: bool = True):
        self.failures, self.allow_retries = failures, allow_retries
        self.calls: list[tuple[str, int, bool]] = []

    def __call__(self, context, step, chunk, ctx, *, attempts: int, may_retry: bool) -> Any:
        self.calls.append((chunk.mapping_key, attempts, may_retry))
        if attempts <= self.failures:
            raise Failure("model server busy", allow_retries=self.allow_retries)
        return ChunkOutcome(chunk, StepStatus.SUCCEEDED, None), None, None


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The waits between tries, recorded instead of slept."""
    recorded: list[float] = []
    monkeypatch.setattr(retrying, "sleep", recorded.append)
    monkeypatch.setattr(chunks, "primitive_context", lambda *args: None)
    monkeypatch.setattr(chunks, "_chunk_template_inputs", lambda *args: {})
    return recorded


def catch_up(
    monkeypatch: pytest.MonkeyPatch, retry: RetrySpec | None, flaky: FlakyChunks, n: int = 1
) -> tuple[list[ChunkOutcome], list[str]]:
    monkeypatch.setattr(chunks, "process_chunk", flaky)
    logged: list[str] = []
    context: Any = SimpleNamespace(log=SimpleNamespace(warning=logged.append))
    step: Any = SimpleNamespace(name="triage", capability=None, step=SimpleNamespace(retry=retry))
    missing = [ChunkSpec(None, 10 * i, 10 * i + 10, i, n) for i in range(n)]  # type: ignore[arg-type]
    return _catch_up(context, None, step, missing), logged  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("backoff", "expected"),
    [("exponential", [0.5, 1.5, 3.5]), ("linear", [0.5, 1.0, 1.5]), ("none", [0.5, 0.5, 0.5])],
)
def test_catch_up_waits_with_the_templates_backoff(
    monkeypatch: pytest.MonkeyPatch, waits: list[float], backoff: str, expected: list[float]
) -> None:
    spec = RetrySpec(max_attempts=4, backoff=backoff, delay_s=0.5)  # type: ignore[arg-type]
    flaky = FlakyChunks(failures=3)
    outcomes, logged = catch_up(monkeypatch, spec, flaky)
    assert [o.status for o in outcomes] == [StepStatus.SUCCEEDED]
    assert waits == pytest.approx(expected)
    assert [(a, r) for _, a, r in flaky.calls] == [(1, True), (2, True), (3, True), (4, False)]
    assert "try 1 of 4 failed; retrying in 0.50 s: model server busy" in logged[1]


def test_catch_up_waits_with_the_templates_jitter(
    monkeypatch: pytest.MonkeyPatch, waits: list[float]
) -> None:
    spec = RetrySpec(max_attempts=9, backoff="linear", delay_s=1.0, jitter="full")
    catch_up(monkeypatch, spec, FlakyChunks(failures=8))
    assert len(waits) == 8
    assert all(0.0 <= wait <= n for n, wait in enumerate(waits, start=1))
    assert any(wait < n - 0.01 for n, wait in enumerate(waits, start=1))  # drawn, not n * delay


def test_catch_up_gives_up_after_max_attempts_and_never_retries_a_permanent_failure(
    monkeypatch: pytest.MonkeyPatch, waits: list[float]
) -> None:
    spec = RetrySpec(max_attempts=2, delay_s=0.1)
    with pytest.raises(Failure, match="busy"):
        catch_up(monkeypatch, spec, FlakyChunks(failures=5))
    assert waits == pytest.approx([0.1])
    waits.clear()
    permanent = FlakyChunks(failures=1, allow_retries=False)
    with pytest.raises(Failure):
        catch_up(monkeypatch, spec, permanent)
    assert waits == [] and len(permanent.calls) == 1


def test_catch_up_without_retry_tries_each_chunk_once(
    monkeypatch: pytest.MonkeyPatch, waits: list[float]
) -> None:
    flaky = FlakyChunks(failures=0)
    outcomes, _ = catch_up(monkeypatch, None, flaky, n=3)
    assert len(outcomes) == 3 and waits == []
    assert [(a, r) for _, a, r in flaky.calls] == [(1, False)] * 3

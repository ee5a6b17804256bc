"""The retry waits shared by the model client and a step's own tries."""

import random

import pytest
from tenacity import RetryCallState

from grammar_ops.retrying import backoff_wait, step_wait


def state(attempt: int, retry_after: float | None = None) -> RetryCallState:
    retry_state = RetryCallState(None, None, (), {})
    retry_state.attempt_number = attempt
    failure = Exception("busy")
    failure.retry_after = retry_after  # type: ignore[attr-defined]
    retry_state.set_exception((Exception, failure, None))
    return retry_state


def test_backoff_doubles_to_the_ceiling_and_jitter_shortens_by_its_fraction() -> None:
    plain = backoff_wait(0.2, 1.0, 0.0)
    assert [plain(state(n)) for n in range(1, 6)] == pytest.approx([0.2, 0.4, 0.8, 1.0, 1.0])
    jittered = backoff_wait(0.2, 1.0, 0.5, random.Random(7))
    drawn = [jittered(state(3)) for _ in range(50)]
    assert all(0.4 <= d <= 0.8 for d in drawn) and min(drawn) < 0.5


def test_backoff_honours_retry_after_up_to_the_ceiling() -> None:
    wait = backoff_wait(0.2, 5.0, 0.0)
    assert wait(state(1, retry_after=3.0)) == 3.0
    assert wait(state(1, retry_after=60.0)) == 5.0
    assert wait(state(3, retry_after=0.1)) == pytest.approx(0.8)  # never shorter than backoff


def test_step_wait_follows_dagsters_retry_policy() -> None:
    assert [step_wait(1.0, "exponential", "none")(state(n)) for n in (1, 2, 3)] == [1, 3, 7]
    assert [step_wait(1.0, "linear", "none")(state(n)) for n in (1, 2, 3)] == [1, 2, 3]
    assert [step_wait(1.0, "none", "none")(state(n)) for n in (1, 2, 3)] == [1, 1, 1]
    assert step_wait(0.0, "exponential", "full")(state(4)) == 0
    full_jitter = step_wait(1.0, "exponential", "full", random.Random(1))
    full = [full_jitter(state(3)) for _ in range(50)]
    assert all(0 <= d <= 7 for d in full) and len(set(full)) > 1
    plus_minus = [step_wait(1.0, "linear", "plus_minus")(state(1)) for _ in range(50)]
    assert all(0 <= d <= 2 for d in plus_minus) and len(set(plus_minus)) > 1

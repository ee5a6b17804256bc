"""How a transient failure is tried again inside one step: tenacity policies shared by every
retry loop that is not Dagster's own.

Two shapes of wait, one library: the model client backs off exponentially to a ceiling, with a
fraction of each wait randomised and a server's `Retry-After` honoured (`backoff_wait`); a batch
merge catching up chunks waits as Dagster's `RetryPolicy` waits between tries of a step, with
the template's `retry:` backoff and jitter (`step_wait`). `retrying` and `async_retrying` build
the loop; they sleep through this module's `sleep` and `async_sleep`, which a test may replace
to record the waits.

    >>> from tenacity import RetryCallState
    >>> state = RetryCallState(None, None, (), {})
    >>> state.attempt_number = 3
    >>> step_wait(1.0, "exponential", "none")(state)  # Dagster's (2**3 - 1) * delay
    7.0
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import Any, Literal

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_fixed,
    wait_incrementing,
    wait_none,
    wait_random,
)
from tenacity.wait import wait_base

Backoff = Literal["exponential", "linear", "none"]
Jitter = Literal["none", "full", "plus_minus"]
BeforeSleep = Callable[[RetryCallState], Any]


def sleep(seconds: float) -> None:
    """Wait between tries of a blocking loop."""
    time.sleep(seconds)


async def async_sleep(seconds: float) -> None:
    """Wait between tries of an async loop."""
    await asyncio.sleep(seconds)


class wait_shortened(wait_base):  # noqa: N801  (tenacity names its waits in lower case)
    """`wait`, shortened by a random part of itself up to `fraction` (1: full jitter), never
    below zero."""

    def __init__(self, wait: wait_base, fraction: float, rng: random.Random | None = None):
        self.wait, self.fraction, self.rng = wait, fraction, rng or random.Random()

    def __call__(self, retry_state: RetryCallState) -> float:
        return max(0.0, self.wait(retry_state) * (1.0 - self.fraction * self.rng.random()))


class wait_retry_after(wait_base):  # noqa: N801
    """`wait`, or longer when the failure asks for it: its `retry_after` seconds, at most
    `ceiling_s`."""

    def __init__(self, wait: wait_base, ceiling_s: float):
        self.wait, self.ceiling_s = wait, ceiling_s

    def __call__(self, retry_state: RetryCallState) -> float:
        delay = self.wait(retry_state)
        failure = retry_state.outcome.exception() if retry_state.outcome else None
        asked = getattr(failure, "retry_after", None)
        return delay if asked is None else max(delay, min(asked, self.ceiling_s))


def backoff_wait(
    base_s: float, max_s: float, jitter: float, rng: random.Random | None = None
) -> wait_base:
    """`base_s` doubled on every retry up to `max_s`, shortened by up to `jitter` of itself;
    at least a failure's `retry_after` (capped at `max_s`)."""
    exponential = wait_exponential(multiplier=base_s, max=max_s)
    return wait_retry_after(wait_shortened(exponential, jitter, rng), ceiling_s=max_s)


def step_wait(
    delay_s: float, backoff: Backoff, jitter: Jitter, rng: random.Random | None = None
) -> wait_base:
    """The wait before retry n as Dagster's `RetryPolicy` computes it for a step.

    Backoff: exponential `(2**n - 1) * delay_s`, linear `n * delay_s`, none `delay_s`. Jitter:
    full draws from 0 to that; plus_minus adds up to `delay_s` either way (never below 0).
    """
    if not delay_s:
        return wait_none()
    growth: wait_base
    if backoff == "exponential":  # delay_s * 2**n - delay_s
        growth = wait_exponential(multiplier=2 * delay_s) + wait_fixed(-delay_s)
    elif backoff == "linear":
        growth = wait_incrementing(start=delay_s, increment=delay_s)
    else:
        growth = wait_fixed(delay_s)
    if jitter == "full":
        return wait_shortened(growth, 1.0, rng)
    if jitter == "plus_minus":
        return wait_shortened(growth + wait_random(-delay_s, delay_s), 0.0)
    return growth


def retrying(
    attempts: int,
    wait: wait_base,
    retry_on: Callable[[BaseException], bool],
    before_sleep: BeforeSleep | None = None,
) -> Retrying:
    """A blocking loop of up to `attempts` tries; a failure `retry_on` refuses, or the last
    one, is raised as it is."""
    return Retrying(sleep=sleep, **_policy(attempts, wait, retry_on, before_sleep))


def async_retrying(
    attempts: int,
    wait: wait_base,
    retry_on: Callable[[BaseException], bool],
    before_sleep: BeforeSleep | None = None,
) -> AsyncRetrying:
    """`retrying` for a coroutine: the same tries and waits, sleeping with asyncio."""
    return AsyncRetrying(sleep=async_sleep, **_policy(attempts, wait, retry_on, before_sleep))


def _policy(
    attempts: int,
    wait: wait_base,
    retry_on: Callable[[BaseException], bool],
    before_sleep: BeforeSleep | None,
) -> dict[str, Any]:
    return {
        "stop": stop_after_attempt(attempts),
        "wait": wait,
        "retry": retry_if_exception(retry_on),
        "before_sleep": before_sleep,
        "reraise": True,
    }

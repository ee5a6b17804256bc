"""Per-run and per-step usage counts for a model resource, added up explicitly.

A model resource owns one `ModelUsage` for the run (Dagster builds a resource once per run
in-process, once per step process with the multiprocess executor). Every reply and every
failure is recorded into the run's `UsageMeter` and, when the caller opened a step scope with
`usage.step(step_key)`, into that step's meter too. Nothing is counted by patching clients.

Example:
    >>> from grammar_ops.model import ModelReply
    >>> usage = ModelUsage()
    >>> with usage.step("triage") as meter:
    ...     usage.record(ModelReply(text="a", value="a", model="m", prompt_tokens=3))
    >>> usage.run.prompt_tokens, meter.prompt_tokens
    (3, 3)
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from grammar_ops.model import ModelError, ModelReply, UsageMeter

_current_step: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "marigold_model_usage_step", default=None
)


class ModelUsage:
    """Usage meters for one run and for each step that opened a scope."""

    def __init__(self) -> None:
        self.run = UsageMeter()
        self.steps: dict[str, UsageMeter] = {}
        self._lock = threading.Lock()

    @contextmanager
    def step(self, step_key: str) -> Iterator[UsageMeter]:
        """Count calls made inside this block (in this thread or task) into `step_key`'s meter.

        Args:
            step_key: the Dagster step key, e.g. `str(context.op_handle)`.

        Yields:
            The step's meter; call `as_metadata()` on it for the step's output metadata.
        """
        with self._lock:
            meter = self.steps.setdefault(step_key, UsageMeter())
        token = _current_step.set(step_key)
        try:
            yield meter
        finally:
            _current_step.reset(token)

    def record(self, reply: ModelReply) -> None:
        """Add a successful reply to the run and to the current step, if any."""
        with self._lock:
            for meter in self._meters():
                meter.record(reply)

    def record_failure(self, error: ModelError) -> None:
        """Add a failed call (its retries, and the tokens of an unusable answer) to the meters."""
        retries = int(getattr(error, "retries", 0))
        with self._lock:
            for meter in self._meters():
                meter.record_failure(error)  # counts the tokens the error carries, once
                meter.retries += retries

    def _meters(self) -> list[UsageMeter]:
        step_key = _current_step.get()
        if step_key is None:
            return [self.run]
        return [self.run, self.steps.setdefault(step_key, UsageMeter())]

"""What a primitive may see and use while it runs: upstream results, models, limits and a log.

The context is plain data built by whoever executes a composition (the Dagster ops in
`marigold_dagster`, or a test); the grammar never imports Dagster.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grammar_ops.failures import TransientError
from grammar_ops.findings import PrimitiveError
from grammar_ops.model import ModelClient, UsageMeter


class StepTimeout(TransientError):
    """The step ran past its `timeout_s` (transient: another try may finish in time)."""


@dataclass
class PrimitiveContext:
    """The environment of one composition run.

    Attributes:
        step: the step (or planned step) name, for messages.
        upstream: results of the step's upstream steps, by step name (joins refer to them).
        template_inputs: the template's launch inputs, by input name (paths or table refs).
        models: model clients by role (`worker`, `planner`, ...).
        artifacts_dir: where primitives may write files (Parquet outputs, dead letters).
        allowed_hosts: hosts network primitives may reach; nothing else is reachable.
        deadline: `time.monotonic()` value after which the step has timed out, or None.
        usage: model usage of this run, added to by `llm.*` primitives.
        log: a logger; Dagster's context log when running in a Dagster step.
    """

    step: str = "step"
    upstream: Mapping[str, Any] = field(default_factory=dict)
    template_inputs: Mapping[str, str] = field(default_factory=dict)
    models: Mapping[str, ModelClient] = field(default_factory=dict)
    artifacts_dir: Path = field(default_factory=lambda: Path(".marigold/artifacts"))
    allowed_hosts: frozenset[str] = frozenset()
    deadline: float | None = None
    usage: UsageMeter = field(default_factory=UsageMeter)
    log: logging.Logger | logging.LoggerAdapter[Any] = field(
        default_factory=lambda: logging.getLogger("marigold.grammar")
    )

    def model(self, role: str) -> ModelClient:
        """The model client bound to `role`, or a clear error naming the roles that are bound."""
        try:
            return self.models[role]
        except KeyError:
            bound = ", ".join(sorted(self.models)) or "none"
            raise PrimitiveError(
                f"step '{self.step}' needs a model for role '{role}', but the roles bound are: "
                f"{bound}. Map the role under `models:` in the template."
            ) from None

    def remaining_s(self) -> float | None:
        """Seconds left before the deadline, or None when there is none."""
        return None if self.deadline is None else self.deadline - time.monotonic()

    def bounded_timeout(self, timeout_s: float) -> float:
        """`timeout_s`, or less when the step's deadline comes sooner."""
        remaining = self.remaining_s()
        return timeout_s if remaining is None else min(timeout_s, remaining)

    def check_deadline(self) -> None:
        """Raise `StepTimeout` when the deadline has passed."""
        remaining = self.remaining_s()
        if remaining is not None and remaining <= 0:
            raise StepTimeout(f"step '{self.step}' ran past its timeout")

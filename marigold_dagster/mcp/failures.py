"""Turning the platform's errors into typed tool failures: a code, a message, what is valid.

A tool body raises; `attempt` catches the platform's own errors and the tools' `ToolProblem`
and answers an `Outcome` with `ok: false`. Anything else is a bug and propagates (the SDK
reports it without its text).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from grammar_ops import CompositionError
from marigold_dagster.errors import (
    GateDecisionError,
    GateTimedOut,
    MarigoldError,
    PlanRejected,
    TemplateError,
    TemplatesInvalid,
    UnknownCorrelationId,
)
from marigold_dagster.mcp.models import Outcome, Problem, ToolFailure

T = TypeVar("T")


class ToolProblem(Exception):
    """A tool cannot answer: `code` (see diagnostics), a message and what would be valid."""

    def __init__(
        self,
        code: str,
        message: str,
        valid: Iterable[str] = (),
        problems: Iterable[Problem] = (),
    ):
        super().__init__(message)
        self.failure = ToolFailure(
            code=code, message=message, valid=list(valid), problems=list(problems)
        )


def template_problems(error: TemplateError) -> list[Problem]:
    """A template error's problems, each with its code, field, line and file."""
    return [
        Problem(code=f.code, field=f.field, line=f.line, message=f.message, file=str(error.path))
        for f in error.findings
    ]


def failure_of(error: Exception) -> ToolFailure | None:
    """The typed failure for one of the platform's errors, or None for anything else."""
    if isinstance(error, ToolProblem):
        return error.failure
    if isinstance(error, TemplateError):
        return ToolFailure(
            code="TEMPLATE_INVALID", message=str(error), problems=template_problems(error)
        )
    if isinstance(error, TemplatesInvalid):
        problems = [p for e in error.errors for p in template_problems(e)]
        return ToolFailure(code="TEMPLATE_INVALID", message=str(error), problems=problems)
    if isinstance(error, CompositionError):
        return ToolFailure(
            code="INVALID_ARGUMENT",
            message=str(error),
            problems=[
                Problem(code=f.code, field=f.field, message=f.message) for f in error.findings
            ],
        )
    if isinstance(error, PlanRejected):
        problems = [
            Problem(code=f.code, field=f.field, message=f.message)
            for attempt in error.outcome.attempts
            for f in attempt.findings
        ]
        return ToolFailure(code="PLAN_REJECTED", message=str(error), problems=problems)
    if isinstance(error, GateTimedOut):
        return ToolFailure(code="GATE_TIMED_OUT", message=str(error))
    if isinstance(error, GateDecisionError):
        return ToolFailure(code="GATE_DECISION", message=str(error))
    if isinstance(error, UnknownCorrelationId):
        return ToolFailure(code="UNKNOWN_CORRELATION_ID", message=str(error))
    if isinstance(error, MarigoldError):
        return ToolFailure(code="PLATFORM_ERROR", message=str(error))
    return None


def attempt(body: Callable[[], T]) -> Outcome[T]:
    """`body()` as an `ok` outcome, or the platform error it raised as a failed one."""
    try:
        return Outcome[T](ok=True, result=body())
    except Exception as error:
        failure = failure_of(error)
        if failure is None:
            raise
        return Outcome[T](ok=False, error=failure)

"""The platform's errors: one small tree, each saying what was wrong and what would be valid.

MarigoldError
├── TemplateError          one template failed to load (every problem, with file:line)
├── TemplatesInvalid       one or more templates in a folder failed to load
├── PlanRejected           the planner produced no valid fragment within `max_attempts`
├── GateDecisionError      a gate decision could not be recorded
│   └── GateTimedOut       the gate's `timeout_s` passed before a decision
├── UnknownCorrelationId   no run belongs to the given task
└── InputOutsideRoots      a launch input resolves outside the input roots
YamlSyntaxError (ValueError): template text that is not valid YAML
└── YamlLimitError         valid YAML over a parsing limit
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class MarigoldError(Exception):
    """Base of the platform's own errors."""


@dataclass(frozen=True)
class TemplateProblem:
    """One problem in a template file, located by line and field path."""

    code: str
    field: str
    message: str
    line: int | None = None

    def render(self, path: Path | str) -> str:
        where = f"{path}:{self.line}" if self.line is not None else str(path)
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.message} [{self.code}]"


class TemplateError(MarigoldError):
    """A template failed to load; carries every problem found, each with file:line and field."""

    def __init__(self, path: Path | str, problems: Iterable[TemplateProblem]):
        self.path = Path(path)
        self.problems: tuple[TemplateProblem, ...] = tuple(problems)
        lines = "\n".join(f"  {p.render(self.path)}" for p in self.problems)
        count = len(self.problems)
        super().__init__(
            f"template {self.path} has {count} problem{'s' if count != 1 else ''}:\n{lines}"
        )


class TemplatesInvalid(MarigoldError):
    """One or more templates in a folder failed to load."""

    def __init__(self, errors: Sequence[TemplateError]):
        self.errors = tuple(errors)
        super().__init__("\n".join(str(error) for error in self.errors))


class YamlSyntaxError(ValueError):
    """The text is not valid YAML; `line` is 1-based."""

    def __init__(self, message: str, line: int | None):
        super().__init__(message)
        self.line = line


class YamlLimitError(YamlSyntaxError):
    """The text is valid YAML but over one of the parsing limits; the message names it."""


class PlanRejected(MarigoldError):
    """The planner did not produce a valid fragment within `max_attempts`.

    `outcome` is the planner's `PlanOutcome`: every attempt with its findings, and the usage.
    """

    def __init__(self, step: str, outcome: Any):
        self.outcome = outcome
        lines = [f"planning step '{step}' got no valid plan in {len(outcome.attempts)} attempt(s):"]
        for attempt in outcome.attempts:
            lines.append(f"  attempt {attempt.number}:")
            lines += [f"    {finding}" for finding in attempt.findings]
        super().__init__("\n".join(lines))


class GateDecisionError(MarigoldError):
    """A decision could not be recorded: the message says what was wrong and what is valid."""


class GateTimedOut(GateDecisionError):
    """The gate's `timeout_s` passed before a decision; it counts as rejected."""


class UnknownCorrelationId(MarigoldError):
    """No run in the instance belongs to the given task."""


class InputOutsideRoots(MarigoldError):
    """A launch input path resolves (links followed) outside every input root."""

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
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the CLI imports this module; `marigold --help` must not load the grammar
    from grammar_ops.findings import Finding


class MarigoldError(Exception):
    """Base of the platform's own errors."""


class TemplateError(MarigoldError):
    """A template failed to load; carries every finding, each with its line and field path."""

    def __init__(self, path: Path | str, findings: Iterable[Finding]):
        self.path = Path(path)
        self.findings: tuple[Finding, ...] = tuple(findings)
        lines = "\n".join(f"  {f.render(self.path)}" for f in self.findings)
        count = len(self.findings)
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

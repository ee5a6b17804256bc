"""Findings: the problems a validator reports, each with a stable code, a location and a message.

Validators collect every problem rather than stopping at the first, so an author (or a planner
model) can fix them all in one pass.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    """One validation problem.

    `code` is stable (`UNKNOWN_CAPABILITY`, `KIND_MISMATCH`, `INVALID_CONFIG`, ...) so callers can
    act on it; `location` is a dotted path (`compose[2].config.labels`); `message` says what was
    wrong and what would be valid.
    """

    code: str
    location: str
    message: str

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        return f"[{self.code}] {where}{self.message}"

    def at(self, prefix: str) -> Finding:
        """The same finding, located under `prefix`."""
        location = f"{prefix}.{self.location}" if self.location else prefix
        return Finding(self.code, location, self.message)


class GrammarError(Exception):
    """Base of the errors the grammar raises."""


class CompositionError(GrammarError):
    """A composition (or a single capability use) failed validation; carries every finding."""

    def __init__(self, findings: Iterable[Finding]):
        self.findings: tuple[Finding, ...] = tuple(findings)
        super().__init__("; ".join(str(f) for f in self.findings) or "invalid composition")


class PrimitiveError(GrammarError):
    """A primitive failed while running, for a reason that retrying the same input will not fix."""


class HostNotAllowed(PrimitiveError):
    """A network primitive was asked to reach a host outside the template's allow-list."""

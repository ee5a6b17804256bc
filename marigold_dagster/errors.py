"""The platform's errors: a small tree, each saying what was wrong and what is valid."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


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

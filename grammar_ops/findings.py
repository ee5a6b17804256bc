"""Findings: the problems a validator reports, each with a stable code, a path and a message.

Validators collect every problem rather than stopping at the first, so an author (or a planner
model) can fix them all in one pass. The grammar, the template loader and the planner's fragment
validation all report `Finding`s and render them one way: `file:line: path: message [CODE]`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from os import PathLike

FindingPath = tuple[str | int, ...]


def render_path(path: FindingPath) -> str:
    """`("compose", 2, "with", "labels")` -> `compose[2].with.labels`.

    A part written `(name)` qualifies the part before it: `uses(classify.labels)[1]` is the
    second primitive of the pattern `classify.labels` expands to.
    """
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif text and not part.startswith("("):
            text += f".{part}"
        else:
            text += part
    return text


@dataclass(frozen=True)
class Finding:
    """One validation problem.

    `code` is stable (`UNKNOWN_CAPABILITY`, `KIND_MISMATCH`, `INVALID_CONFIG`, ...) so callers can
    act on it; `path` locates it in the document checked (`("compose", 2, "with", "labels")`);
    `message` says what was wrong and what would be valid; `line` is the 1-based line of the
    path in a file, where the document came from one.
    """

    code: str
    path: FindingPath
    message: str
    line: int | None = None

    @property
    def field(self) -> str:
        """The path as written in messages (`compose[2].with.labels`)."""
        return render_path(self.path)

    def render(self, file: str | PathLike[str] | None = None) -> str:
        """`file:line: path: message [CODE]`, leaving out the parts not known."""
        where = [str(file)] if file is not None else []
        if self.line is not None:
            where.append(str(self.line) if where else f"line {self.line}")
        prefix = f"{':'.join(where)}: " if where else ""
        field = f"{self.field}: " if self.path else ""
        return f"{prefix}{field}{self.message} [{self.code}]"

    def __str__(self) -> str:
        return self.render()

    def at(self, *prefix: str | int) -> Finding:
        """The same finding, its path under `prefix`."""
        return Finding(self.code, (*prefix, *self.path), self.message, self.line)


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

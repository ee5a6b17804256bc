"""Whether retrying can fix a failure: the one classification every step kind goes by.

A failure is *transient* when the same input may succeed on another try: a model server or an
HTTP host unreachable, or answering 408, 429 or 5xx (after the client's own attempts), a
timeout, storage I/O. Everything else is *permanent*: configuration, validation, an expression,
a schema, a missing field, a model answer that breaks its constraint.

Sources say which at the point they fail: they raise `TransientError` (or a `ModelError` with
`retryable=True`) for the first kind and `ConfigurationError` when a step's configuration does
not fit its input; `is_transient` reads that, so no step kind guesses.
"""

from __future__ import annotations

from grammar_ops.findings import PrimitiveError
from grammar_ops.model import ModelError

_NOT_TRANSIENT_OS_ERRORS = (
    FileNotFoundError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)


class TransientError(PrimitiveError):
    """A primitive failed for a reason retrying may fix (unreachable, 429/5xx, timeout, I/O)."""


class ConfigurationError(PrimitiveError):
    """A step's configuration does not fit its input (e.g. it names a field the input lacks).

    No row can succeed, so a batch fails its step instead of setting rows aside one by one.
    """


def transient_status(status: int) -> bool:
    """Whether an HTTP status says "try again": 408, 429 and every 5xx."""
    return status in (408, 429) or status >= 500


def is_transient(error: BaseException) -> bool:
    """Whether retrying the same input may succeed.

    `TransientError`s and retryable `ModelError`s are transient, and so is an `OSError` that is
    not about a path (connection resets, storage I/O); everything else is permanent.
    """
    if isinstance(error, TransientError):
        return True
    if isinstance(error, ModelError):
        return error.retryable
    if isinstance(error, OSError):
        return not isinstance(error, _NOT_TRANSIENT_OS_ERRORS)
    return False


def failure_class(error: BaseException) -> str:
    """`transient` or `permanent`, as recorded on a failed step."""
    return "transient" if is_transient(error) else "permanent"

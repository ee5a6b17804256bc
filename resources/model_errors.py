"""The errors model resources raise, as a small tree under the grammar's `ModelError`.

- `ModelServerError`: a call to a model server failed for good (after retries), or the server
  refused it (HTTP 400 and other non-retryable statuses); it names the server and the status.
- `ModelServerCheckError`: the server check at resource setup failed (down, unauthorised,
  serving another model); raised before any step runs.
- `ModelAnswerError`: the server answered, but the answer is unusable: truncated at
  `max_new_tokens`, not JSON, not valid against the schema, or not one of the choices; it
  carries the tokens the answer took.

Messages say what was wrong and what would be valid; they never contain the API key or the
prompt.
"""

from __future__ import annotations

from grammar_ops.model import ModelError


class ModelServerError(ModelError):
    """A model server call failed for good, with the server, status and attempts it took."""

    def __init__(
        self,
        message: str,
        *,
        url: str | None = None,
        status: int | None = None,
        retries: int = 0,
        retryable: bool = False,
        last_response: str | None = None,
    ):
        super().__init__(message, retryable=retryable, last_response=last_response)
        self.url = url
        self.status = status
        self.retries = retries


class ModelServerCheckError(ModelServerError):
    """The model server failed the check made when the resource was set up."""


class ModelAnswerError(ModelServerError):
    """The model server answered, but the answer is truncated, malformed or out of bounds.

    The answer still took tokens: the server's counts (and their cost) ride on the error, so
    usage meters and budgets count a rejected answer like an accepted one.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float = 0.0

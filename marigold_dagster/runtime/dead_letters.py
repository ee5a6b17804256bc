"""Dead letters: the rows a batch step could not process, kept whole with why, as one table.

A dead-letter table holds each such row's original columns, then `_dead_letter_*` columns:
its row index in the batch's input, the step, the error and its type, how many times the step
tried the row, how many HTTP attempts the last model call took, and the model's last answer
when there was one (an answer that was cut off or was not valid). It is written next to the
run's other tables as `<step>__dead_letters.parquet`.

The table is a valid input for the same template, so reprocessing the failed rows is one more
run over it, e.g. `marigold run contract_review --input contracts=<dead letters path>`: batch
steps drop `_dead_letter_*` columns from the rows they read (`strip_dead_letter_columns`), so
only the rows' own columns reach the capability, and a row that fails again is dead-lettered
again with fresh details.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pyarrow as pa

from grammar_ops.model import ModelCall, ModelClient, ModelError, ModelReply

PREFIX = "_dead_letter_"
ROW = f"{PREFIX}row"
STEP = f"{PREFIX}step"
ERROR = f"{PREFIX}error"
ERROR_TYPE = f"{PREFIX}error_type"
ATTEMPTS = f"{PREFIX}attempts"
MODEL_ATTEMPTS = f"{PREFIX}model_attempts"
LAST_RESPONSE = f"{PREFIX}last_response"


@dataclass(frozen=True)
class DeadLetter:
    """Why one input row was not processed: the error, tries, and the model's last answer."""

    row: int
    error: str
    attempts: int
    error_type: str = ""
    model_attempts: int | None = None
    last_response: str | None = None


def dead_letter(
    row: int, error: BaseException, attempts: int, model_errors: Sequence[ModelError] = ()
) -> DeadLetter:
    """The dead letter of input row `row` that failed with `error` after `attempts` tries.

    `model_errors` are the model failures seen while the row was tried (the primitive that
    raised `error` may have summarised them); the last one is the row's own error, with its
    type, HTTP attempts and the model's last answer.
    """
    cause = model_errors[-1] if model_errors else None
    retries = getattr(cause, "retries", None)
    return DeadLetter(
        row=row,
        error=str(cause if cause is not None else error),
        attempts=attempts,
        error_type=type(cause or error).__name__,
        model_attempts=retries + 1 if isinstance(retries, int) else None,
        last_response=cause.last_response if cause is not None else None,
    )


def strip_dead_letter_columns(table: pa.Table) -> pa.Table:
    """`table` without the `_dead_letter_*` columns a dead-letter table adds."""
    keep = [name for name in table.column_names if not name.startswith(PREFIX)]
    return table if len(keep) == table.num_columns else table.select(keep)


def dead_letter_table(source: pa.Table, letters: Sequence[DeadLetter], step: str) -> pa.Table:
    """The rows of `source` named by `letters` (in row order), with their dead-letter columns."""
    ordered = sorted(letters, key=lambda letter: letter.row)
    rows = strip_dead_letter_columns(source).take(pa.array([d.row for d in ordered], pa.int64()))
    columns = {
        ROW: pa.array([d.row for d in ordered], pa.int64()),
        STEP: pa.array([step] * len(ordered), pa.string()),
        ERROR: pa.array([d.error for d in ordered], pa.string()),
        ERROR_TYPE: pa.array([d.error_type for d in ordered], pa.string()),
        ATTEMPTS: pa.array([d.attempts for d in ordered], pa.int64()),
        MODEL_ATTEMPTS: pa.array([d.model_attempts for d in ordered], pa.int64()),
        LAST_RESPONSE: pa.array([d.last_response for d in ordered], pa.string()),
    }
    for name, column in columns.items():
        rows = rows.append_column(name, column)
    return rows


@dataclass
class ModelFailureRecorder:
    """A model client that passes every call through and keeps the `ModelError`s it returns.

    Primitives summarise failed calls into one `PrimitiveError`; running one row through a
    recorder keeps that row's own model failures (type, attempts, last answer) for its dead
    letter.
    """

    client: ModelClient
    failures: list[ModelError] = field(default_factory=list)

    @property
    def model_name(self) -> str:
        return self.client.model_name

    def complete(self, call: ModelCall) -> ModelReply:
        try:
            return self.client.complete(call)
        except ModelError as error:
            self.failures.append(error)
            raise

    def complete_many(self, calls: Sequence[ModelCall]) -> list[ModelReply | ModelError]:
        results = self.client.complete_many(calls)
        self.failures.extend(r for r in results if isinstance(r, ModelError))
        return results

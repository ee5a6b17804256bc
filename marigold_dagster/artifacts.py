"""Step values: what one Dagster step hands the next, with tables travelling as Parquet files.

Dagster pickles step outputs through its IO manager, so a large table is written once to a
run-scoped Parquet file and only a `TableRef` (path and row count) crosses the step boundary.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from grammar_ops import Kind
from grammar_ops.contracts import kind_of, row_count


@dataclass(frozen=True)
class TableRef:
    """A Parquet file holding a step's table."""

    path: str
    num_rows: int

    def load(self) -> pa.Table:
        return pq.read_table(self.path)

    def load_slice(self, start: int, stop: int) -> pa.Table:
        return pq.read_table(self.path).slice(start, stop - start)


@dataclass(frozen=True)
class StepValue:
    """A step's result: the producing step, its kind, and the value (tables as `TableRef`)."""

    step: str
    kind: Kind
    payload: Any

    @property
    def rows(self) -> int | None:
        if isinstance(self.payload, TableRef):
            return self.payload.num_rows
        return row_count(self.payload)

    def load(self) -> Any:
        """The value as primitives take it (a `pyarrow.Table` for tables)."""
        if isinstance(self.payload, TableRef):
            return self.payload.load()
        return self.payload


def artifacts_dir(storage_directory: str, run_id: str) -> Path:
    """The folder a run's tables and reports are written to, under the instance's storage.

    It and `marigold/` above it are owner-only (0700), whatever the umask: run data is the
    deployment's, not every local user's.
    """
    base = Path(storage_directory) / "marigold"
    path = (base / run_id).resolve()
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    for folder in (base, path):
        if stat.S_IMODE(folder.stat().st_mode) != 0o700:
            folder.chmod(0o700)
    return path


def store_value(step_key: str, value: Any, directory: Path) -> StepValue:
    """Wrap `value` for the next step; a table is written to `<directory>/<step_key>.parquet`."""
    kind = kind_of(value)
    if isinstance(value, pa.Table):
        path = directory / f"{_file_stem(step_key)}.parquet"
        tmp = path.with_suffix(".parquet.tmp")
        tmp.touch(mode=0o600, exist_ok=True)
        tmp.chmod(0o600)
        pq.write_table(value, tmp)
        tmp.replace(path)  # atomic: a re-executed step never sees half a file
        return StepValue(step=step_key, kind=kind, payload=TableRef(str(path), value.num_rows))
    return StepValue(step=step_key, kind=kind, payload=value)


def as_table(value: Any) -> pa.Table:
    """A step's rows as one table: a table as it is, a list of records through `from_pylist`."""
    return value if isinstance(value, pa.Table) else pa.Table.from_pylist(value)


def _file_stem(step_key: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "-" for c in step_key)

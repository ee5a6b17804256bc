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
        """Rows `[start, stop)`, reading only the row groups that hold them.

        A table stored with row groups the size of a batch's chunks (`store_value(...,
        row_group_size=)`) gives each chunk its own row group: memory and I/O per chunk are
        bounded by the chunk, not by the table.
        """
        parquet = pq.ParquetFile(self.path)
        groups, first_row, offset = [], None, 0
        for index in range(parquet.metadata.num_row_groups):
            size = parquet.metadata.row_group(index).num_rows
            if offset < stop and offset + size > start:
                groups.append(index)
                first_row = offset if first_row is None else first_row
            offset += size
        if not groups:
            return parquet.schema_arrow.empty_table()
        table = parquet.read_row_groups(groups)
        assert first_row is not None
        return table.slice(start - first_row, stop - start)

    def row_group_rows(self) -> list[int]:
        """Rows in each of the file's row groups."""
        metadata = pq.ParquetFile(self.path).metadata
        return [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]


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


def store_value(
    step_key: str, value: Any, directory: Path, row_group_size: int | None = None
) -> StepValue:
    """Wrap `value` for the next step; a table is written to `<directory>/<step_key>.parquet`.

    `row_group_size` sets the rows per Parquet row group (pyarrow's default otherwise).
    """
    kind = kind_of(value)
    if isinstance(value, pa.Table):
        path = directory / f"{_file_stem(step_key)}.parquet"
        tmp = path.with_suffix(".parquet.tmp")
        tmp.touch(mode=0o600, exist_ok=True)
        tmp.chmod(0o600)
        pq.write_table(value, tmp, row_group_size=row_group_size)
        tmp.replace(path)  # atomic: a re-executed step never sees half a file
        return StepValue(step=step_key, kind=kind, payload=TableRef(str(path), value.num_rows))
    return StepValue(step=step_key, kind=kind, payload=value)


def store_table_parts(step_key: str, parts: list[TableRef], directory: Path) -> StepValue:
    """Concatenate the Parquet files `parts`, in order, into one table file, part by part.

    Holds one part in memory at a time. Columns are the union of the parts' columns (types
    promoted as `pyarrow.concat_tables(promote_options="permissive")` would); a part missing a
    column gets nulls there.
    """
    path = directory / f"{_file_stem(step_key)}.parquet"
    tmp = path.with_suffix(".parquet.tmp")
    schemas = [pq.read_schema(part.path) for part in parts]
    schema = pa.unify_schemas(schemas, promote_options="permissive") if schemas else pa.schema([])
    rows = 0
    tmp.touch(mode=0o600, exist_ok=True)
    tmp.chmod(0o600)
    with pq.ParquetWriter(tmp, schema) as writer:
        for part in parts:
            table = _conform(part.load(), schema)
            writer.write_table(table)
            rows += table.num_rows
    tmp.replace(path)
    return StepValue(step=step_key, kind=Kind.TABLE, payload=TableRef(str(path), rows))


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    columns = [
        table.column(f.name).cast(f.type)
        if f.name in table.column_names
        else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def as_table(value: Any) -> pa.Table:
    """A step's rows as one table: a table as it is, a list of records through `from_pylist`."""
    return value if isinstance(value, pa.Table) else pa.Table.from_pylist(value)


def _file_stem(step_key: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "-" for c in step_key)

"""How a converge step combines the results of the upstreams that ran, as its template declares.

- `union`: every upstream's rows stacked in `depends_on` order, each tagged `source_step` (the
  upstream of this converge, also when that upstream is a converge itself);
  columns are matched by name, a column an upstream lacks is null there, and column types are
  kept (an integer column stays an integer column);
- `join`: rows matched on the `keys` fields, a full outer join in `depends_on` order, so every
  row of every upstream is kept; a non-key column two upstreams share is suffixed with the
  later upstream's name; rows come out ordered by the keys, then by each upstream's row order;
  every column keeps its type;
- `by_source`: a mapping of upstream step name to its result, whatever its shape.

Upstreams that did not run contribute nothing; with none, the result is empty.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from grammar_ops import ConfigurationError, Kind
from marigold_dagster.artifacts import StepValue, as_table
from marigold_dagster.template.frame import FrameStep
from marigold_dagster.template.model import ConvergeStep

SOURCE_STEP = "source_step"
_LEFT, _RIGHT = "__marigold_left_row", "__marigold_right_row"


def combine(step: FrameStep, values: Sequence[StepValue]) -> Any:
    """The converge's input: the results in `values` (upstreams that ran) combined as declared."""
    spec = step.step
    assert isinstance(spec, ConvergeStep)
    if spec.combine == "by_source" or step.input_kind is not Kind.TABLE:
        return {value.step: value.load() for value in values}
    if spec.combine == "join":
        return join(step.name, values, spec.keys)
    return union(values)


def union(values: Sequence[StepValue]) -> pa.Table:
    """Rows of every value, in order, tagged with `source_step`; column types kept."""
    tables = []
    for value in values:
        table = as_table(value.load())
        source = pa.array([value.step] * table.num_rows, pa.string())
        if SOURCE_STEP in table.column_names:  # a converge's result: this converge's upstream
            table = table.drop_columns([SOURCE_STEP])
        tables.append(table.append_column(SOURCE_STEP, source))
    if not tables:
        return pa.table({SOURCE_STEP: pa.array([], pa.string())})
    return pa.concat_tables(tables, promote_options="permissive")


def join(step: str, values: Sequence[StepValue], on: Sequence[str]) -> pa.Table:
    """A full outer join of every value's rows on the fields `on`.

    Only the keys go through Arrow's hash join (which refuses list and struct payload
    columns); every other column is taken from its own table by row index, type unchanged.

    Raises:
        ConfigurationError: an upstream's rows lack a join field (named, with its fields).
    """
    keys = list(on)
    result: pa.Table | None = None
    for value in values:
        table = as_table(value.load())
        missing = [key for key in keys if key not in table.column_names]
        if missing:
            raise ConfigurationError(
                f"converge '{step}' joins on {keys}, but the rows of '{value.step}' have no "
                f"field(s) {missing}; its fields: {', '.join(table.column_names) or '(none)'}"
            )
        result = table if result is None else _outer_join(result, table, keys, value.step)
    if result is None:
        return pa.table({key: pa.array([], pa.string()) for key in keys})
    return result


def _outer_join(left: pa.Table, right: pa.Table, keys: list[str], right_name: str) -> pa.Table:
    """`left` and `right` matched on `keys`, every row of both kept, ordered by the keys."""
    left_index = pa.table(
        {**{k: left[k] for k in keys}, _LEFT: pa.array(range(left.num_rows), pa.int64())}
    )
    right_index = pa.table(
        {**{k: right[k] for k in keys}, _RIGHT: pa.array(range(right.num_rows), pa.int64())}
    )
    pairs = left_index.join(right_index, keys=keys, join_type="full outer", coalesce_keys=True)
    pairs = pairs.sort_by([(name, "ascending") for name in [*keys, _LEFT, _RIGHT]])
    columns: dict[str, Any] = {}
    for name in left.column_names:
        columns[name] = pairs[name] if name in keys else left[name].take(pairs[_LEFT])
    for name in right.column_names:
        if name in keys:
            continue
        column = right[name].take(pairs[_RIGHT])
        columns[f"{name}_{right_name}" if name in columns else name] = column
    return pa.table(columns)

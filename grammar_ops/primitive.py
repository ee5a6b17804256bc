"""Primitives: the typed building blocks of every capability.

A primitive has a dotted name (`transform.filter`), a one-line summary and a longer description,
the kinds it accepts and produces, a pydantic config model, and whether it has a side effect.
Application capabilities (code a deployment registers) are primitives too, marked
`handler_type = "application"`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from grammar_ops.context import PrimitiveContext
from grammar_ops.contracts import Kind

HandlerType = Literal["grammar", "application"]
ConfigPath = tuple[str | int, ...]
Columns = frozenset[str] | None  # the fields of rows, or None when not known before a run


class NoConfig(BaseModel):
    """Config of a primitive that takes none."""

    model_config = ConfigDict(extra="forbid")


class PrimitiveConfig(BaseModel):
    """Base of built-in configs: unknown keys are errors, and aliases (`if`, `else`) round-trip.

    Subclasses describe every field (descriptions feed the capability schema) and give an
    example (`json_schema_extra={"examples": [...]}`) when a field is required.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)


class Primitive(ABC):
    """Base class of primitives. Subclasses set the class attributes and implement `run`.

    `produces = None` means "the same kind as the input" (e.g. `transform.filter` keeps a table
    a table and records records). `ignores_input` marks primitives that start a flow
    (`acquire.*`): they accept every kind and read none of it.
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    description: ClassVar[str]
    accepts: ClassVar[frozenset[Kind]]
    produces: ClassVar[Kind | None]
    side_effect: ClassVar[bool] = False
    # How many model calls one run makes, for budget estimates: one per input row, or one.
    model_calls: ClassVar[Literal["per_row", "per_run"]] = "per_row"
    ignores_input: ClassVar[bool] = False
    handler_type: ClassVar[HandlerType] = "grammar"
    Config: ClassVar[type[BaseModel]] = NoConfig

    def output_kind(self, input_kind: Kind) -> Kind:
        """The kind this primitive produces when given `input_kind`."""
        return input_kind if self.produces is None else self.produces

    def model_role(self, config: BaseModel) -> str | None:
        """The model role this primitive calls with `config`, or None when it calls no model."""
        return None

    def reads_inputs(self, config: BaseModel) -> tuple[str, ...]:
        """Names of template inputs this primitive reads with `config` (acquire.* override)."""
        return ()

    def reads_upstream(self, config: BaseModel) -> tuple[str, ...]:
        """Names of upstream steps whose results this primitive reads besides its input (joins)."""
        return ()

    def fields_read(self, config: BaseModel) -> tuple[tuple[ConfigPath, str], ...]:
        """Fields of the input rows `config` reads (in expressions, `field:`, `by:`), each with
        its path inside `with:`; checked at load time when the input's columns are known."""
        return ()

    def output_columns(
        self, config: BaseModel, columns: Columns, inputs: Mapping[str, frozenset[str]]
    ) -> Columns:
        """The columns of the rows this primitive produces from rows with `columns`.

        `inputs` holds the declared columns of template inputs. None means "not known before the
        run", which stops the load-time field check downstream; that is the default.
        """
        return None

    def branch_refs(self, config: BaseModel) -> tuple[tuple[tuple[str | int, ...], str], ...]:
        """Branch names `config` may choose, each with its path inside `with:` (decide.* override).

        The template loader checks them against the decision step's declared `branches:`.
        """
        return ()

    @abstractmethod
    def run(self, value: Any, config: Any, ctx: PrimitiveContext) -> Any:
        """Transform `value` (of an accepted kind) under `config`; return the produced value."""

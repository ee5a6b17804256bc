"""Application capabilities: a deployment's own Python functions, typed like primitives.

    @application_capability(
        "lookup_counterparty", accepts={Kind.RECORDS}, produces=Kind.RECORDS,
        summary="Look up each record's counterparty in the CRM",
    )
    def lookup_counterparty(records, config, ctx): ...

They are registered by code the deployment owns (never named by a plan or a model into
existence) and carry `handler_type = "application"` in provenance.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from pydantic import BaseModel

from grammar_ops.context import PrimitiveContext
from grammar_ops.contracts import Kind
from grammar_ops.primitive import NoConfig, Primitive

Handler = Callable[[Any, Any, PrimitiveContext], Any]


def application_capability(
    name: str,
    *,
    accepts: Iterable[Kind],
    produces: Kind | None,
    summary: str,
    description: str = "",
    config: type[BaseModel] = NoConfig,
    side_effect: bool = False,
    model_role: str | None = None,
    input_field: str | None = None,
) -> Callable[[Handler], Primitive]:
    """Turn `handler(value, config, ctx)` into a primitive named `name`.

    `model_role` names the model role the handler calls; `input_field` names the config field
    that holds a template input's name, when the handler reads one.
    """

    def wrap(handler: Handler) -> Primitive:
        attributes = {
            "name": name,
            "summary": summary,
            "description": description or summary,
            "accepts": frozenset(accepts),
            "produces": produces,
            "side_effect": side_effect,
            "handler_type": "application",
            "Config": config,
            "run": lambda self, value, cfg, ctx: handler(value, cfg, ctx),
            "model_role": lambda self, cfg: model_role,
            "reads_inputs": lambda self, cfg: (getattr(cfg, input_field),) if input_field else (),
            "__doc__": handler.__doc__,
        }
        cls = type(f"Application_{name.replace('.', '_')}", (Primitive,), attributes)
        return cls()

    return wrap

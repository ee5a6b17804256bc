"""Application capabilities with observable behaviour, as a deployment would register them.

Chosen so each test can see which steps ran, in which order, with which data, and can make a
chosen chunk fail or a step fail once before succeeding.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pyarrow as pa
from pydantic import BaseModel

from grammar_ops import Decision, Kind, PrimitiveError, application_capability

ROWS = {Kind.TABLE, Kind.RECORDS}


class RowsConfig(BaseModel):
    n: int


@application_capability(
    "t.rows",
    accepts=set(Kind),
    produces=Kind.RECORDS,
    summary="n rows {id, trail}",
    config=RowsConfig,
)
def make_rows(value: Any, config: RowsConfig, ctx: Any) -> list[dict[str, Any]]:
    return [{"id": i, "trail": ctx.step} for i in range(config.n)]


class NoConfig(BaseModel):
    pass


@application_capability(
    "t.mark",
    accepts=set(Kind),
    produces=Kind.RECORDS,
    summary="append this step's name to each row's trail (one row from nothing)",
)
def mark(value: Any, config: NoConfig, ctx: Any) -> list[dict[str, Any]]:
    rows = _rows(value) or [{"id": 0, "trail": ""}]
    return [dict(row, trail=f"{row['trail']}>{ctx.step}".lstrip(">")) for row in rows]


def _rows(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, pa.Table):
        return value.to_pylist()
    if isinstance(value, list):
        return value
    return []


class RouteConfig(BaseModel):
    choose: list[str]


@application_capability(
    "t.route",
    accepts=set(Kind),
    produces=Kind.DECISION,
    summary="choose fixed branches",
    config=RouteConfig,
)
def route(value: Any, config: RouteConfig, ctx: Any) -> Decision:
    return Decision(branches=config.choose, reason=f"configured to choose {config.choose}")


class PoisonConfig(BaseModel):
    bad_ids: list[int]


@application_capability(
    "t.poison",
    accepts=ROWS,
    produces=None,
    summary="fail on rows whose id is listed",
    config=PoisonConfig,
)
def poison(value: Any, config: PoisonConfig, ctx: Any) -> Any:
    bad = sorted(set(config.bad_ids) & {row["id"] for row in _rows(value)})
    if bad:
        raise PrimitiveError(f"rows {bad} are poison")
    return value


class FlakyConfig(BaseModel):
    state_dir: str
    failures: int = 1


@application_capability(
    "t.flaky",
    accepts=ROWS,
    produces=None,
    summary="fail the first N tries of each chunk",
    config=FlakyConfig,
)
def flaky(value: Any, config: FlakyConfig, ctx: Any) -> Any:
    rows = _rows(value)
    marker = Path(config.state_dir) / f"{ctx.step}-{rows[0]['id'] if rows else 'empty'}"
    tries = int(marker.read_text()) if marker.exists() else 0
    marker.write_text(str(tries + 1))
    if tries < config.failures:
        raise ConnectionError(f"transient failure {tries + 1} of {config.failures}")
    return value


class SleepConfig(BaseModel):
    seconds: float


@application_capability(
    "t.sleep",
    accepts=set(Kind),
    produces=Kind.RECORDS,
    summary="sleep, then one row",
    config=SleepConfig,
)
def sleep(value: Any, config: SleepConfig, ctx: Any) -> list[dict[str, Any]]:
    time.sleep(config.seconds)
    return [{"id": 0, "trail": ctx.step}]


@application_capability(
    "t.ask",
    accepts=set(Kind),
    produces=Kind.JSON,
    summary="ask the worker model",
    model_role="worker",
)
def ask(value: Any, config: NoConfig, ctx: Any) -> Any:
    return ctx.model("worker").model_name


class ReadInputConfig(BaseModel):
    input: str


@application_capability(
    "t.read_input",
    accepts=set(Kind),
    produces=Kind.JSON,
    summary="the path of an input",
    config=ReadInputConfig,
    input_field="input",
)
def read_input(value: Any, config: ReadInputConfig, ctx: Any) -> Any:
    return ctx.template_inputs[config.input]


TEST_CAPABILITIES = [make_rows, mark, route, poison, flaky, sleep, ask, read_input]


class ExplodeConfig(BaseModel):
    copies: int


@application_capability(
    "t.explode",
    accepts=ROWS,
    produces=Kind.RECORDS,
    summary="repeat every row N times",
    config=ExplodeConfig,
)
def explode(value: Any, config: ExplodeConfig, ctx: Any) -> list[dict[str, Any]]:
    return [dict(row, copy=i) for row in _rows(value) for i in range(config.copies)]


@application_capability(
    "t.ask_each",
    accepts=ROWS,
    produces=Kind.RECORDS,
    summary="ask the worker model one question per row",
    model_role="worker",
)
def ask_each(value: Any, config: NoConfig, ctx: Any) -> list[dict[str, Any]]:
    from grammar_ops import ModelCall, ModelError

    rows = _rows(value)
    calls = [
        ModelCall(purpose="generate", prompt=f"Describe row {row['id']}.", max_new_tokens=200)
        for row in rows
    ]
    replies = ctx.model("worker").complete_many(calls)
    out = []
    for row, reply in zip(rows, replies, strict=True):
        if isinstance(reply, ModelError):
            ctx.usage.record_failure()
            raise PrimitiveError(f"row {row['id']}: {reply}")
        ctx.usage.record(reply)
        out.append(dict(row, answer=reply.text[:40]))
    return out


TEST_CAPABILITIES += [explode, ask_each]

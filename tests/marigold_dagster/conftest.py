"""Fixtures for compiler tests: application capabilities with observable behaviour.

These are a deployment's own capabilities as a user would register them (`application_capability`),
chosen so each test can see which steps ran, in which order, with which data, and can make a
chosen chunk fail or a step fail once before succeeding.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from dagster import DagsterInstance, ExecuteInProcessResult
from pydantic import BaseModel

from grammar_ops import (
    Catalog,
    Decision,
    Kind,
    PrimitiveError,
    application_capability,
    standard_catalog,
)
from marigold_dagster.compiler import compile_frame
from marigold_dagster.frame import Frame
from marigold_dagster.loader import load_template
from marigold_dagster.run_summary import RunSummary, summarise_run

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


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    """The standard catalog plus the test application capabilities."""
    return standard_catalog().extended(TEST_CAPABILITIES)


@pytest.fixture
def write_template(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write YAML text as `<name>.yaml` in a fresh templates folder; return its path."""
    folder = tmp_path / "templates"
    folder.mkdir(exist_ok=True)

    def write(name: str, text: str) -> Path:
        path = folder / f"{name}.yaml"
        path.write_text(text)
        return path

    return write


class TemplateRun:
    """A finished in-process run of a template, with its summary."""

    def __init__(self, frame: Frame, result: ExecuteInProcessResult, summary: RunSummary):
        self.frame = frame
        self.result = result
        self.summary = summary

    @property
    def started(self) -> list[str]:
        """Step keys in the order they started."""
        return [e.step_key for e in self.result.all_events if e.event_type_value == "STEP_START"]

    def rows(self, step: str) -> list[dict[str, Any]]:
        value = self.result.output_for_node(step)
        loaded = value.load()
        return loaded.to_pylist() if isinstance(loaded, pa.Table) else loaded


@pytest.fixture
def run_template(
    catalog: Catalog, write_template: Callable[[str, str], Path]
) -> Callable[..., TemplateRun]:
    """Load YAML text, compile it and run it in process on the given instance."""

    def run(name: str, text: str, instance: DagsterInstance, **kwargs: Any) -> TemplateRun:
        frame = load_template(write_template(name, text), catalog)
        job = compile_frame(frame)
        result = job.execute_in_process(instance=instance, raise_on_error=False, **kwargs)
        return TemplateRun(frame, result, summarise_run(instance, result.run_id, frame))

    return run


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

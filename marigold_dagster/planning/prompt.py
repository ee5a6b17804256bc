"""The planner prompt, composed in priority order with a byte-identical shared prefix.

Order: instructions (a file), the allowed capabilities' schema, the goal (always whole) and the
step's fixed limits form the *prefix*, identical for every call of one planning step, so
SGLang's prefix cache serves it. After it come what varies: the results so far, the remaining
budget, and on a retry the diagnostics of the rejected attempt.

A result is shown by its size as JSON: verbatim under 1 KB; a structured summary (columns, row
count, value counts, a sample) up to 10 KB; up to 100 KB the structured summary plus a *digest*,
a summary the model wrote in a call of its own before planning (`digest_call`); beyond that, by
reference, with schema and sample.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import pyarrow as pa

from grammar_ops import Catalog, Finding, ModelCall
from grammar_ops.capability_schema import render_capability_tier
from marigold_dagster.artifacts import StepValue, TableRef
from marigold_dagster.planning.budget import BudgetStatus
from marigold_dagster.planning.fragment import nested_deeper_than

VERBATIM_BYTES = 1_000
STRUCTURED_BYTES = 10_000
DIGEST_BYTES = 100_000
DIGEST_MAX_TOKENS = 300
DIGEST_INSTRUCTIONS = (
    "Summarise the step result below for a planner deciding which steps to run next: what the "
    "items are, the notable groups, values and outliers, and anything missing or unusual. Be "
    "factual and brief; do not suggest steps.\n\n"
)
SAMPLE_ROWS = 2
SAMPLE_CHARS = 100
CATEGORY_CHARS = 40
DISTINCT_LIMIT = 10
MAX_RESULT_DEPTH = 100  # a result nested deeper is described, never rendered
MAX_PROMPT_FINDINGS = 20  # findings of a rejected answer a retry prompt lists; the rest are counted


@cache
def planner_instructions() -> str:
    prompts = resources.files("marigold_dagster.planning").joinpath("prompts")
    return prompts.joinpath("planner.md").read_text("utf-8")


@dataclass(frozen=True)
class PlannerPrompt:
    """A prompt in two parts; `prefix` is identical across calls of one planning step."""

    prefix: str
    variable: str
    tier: int

    @property
    def text(self) -> str:
        return self.prefix + self.variable


def capability_section(catalog: Catalog, names: Iterable[str], tier: int) -> str:
    """Tiers 1..`tier` of the capability schema for the allowed names, concatenated."""
    chosen = sorted(set(names))
    parts = [render_capability_tier(catalog, level, chosen).text for level in range(1, tier + 1)]
    return "\n\n".join(parts)


def prompt_prefix(
    catalog: Catalog,
    goal: str,
    presets: Mapping[str, Mapping[str, Any]],
    *,
    tier: int,
    max_steps: int,
    max_depth: int,
    composable: Sequence[str] = (),
) -> str:
    pinned = {name: dict(config) for name, config in sorted(presets.items()) if config}
    lines = [
        planner_instructions().rstrip(),
        "",
        "## Allowed capabilities",
        capability_section(catalog, presets, tier),
    ]
    if pinned:
        lines += ["", "## Pinned configuration", json.dumps(pinned, sort_keys=True, indent=1)]
    if composable:
        lines += ["", "## You may also compose these primitives", ", ".join(sorted(composable))]
    lines += [
        "",
        "## Goal",
        goal.strip(),
        "",
        "## Limits",
        f"At most {max_steps} steps; depth at most {max_depth}.",
        "",
        "",
    ]
    return "\n".join(lines)


def results_section(
    results: Mapping[str, StepValue], digests: Mapping[str, str] | None = None
) -> str:
    """The results so far, each shown by its size (`describe_result`).

    It loads and renders every result, so a planning call renders it once for all its attempts.
    """
    lines = ["## Results available"]
    if not results:
        lines.append("(none)")
    for name, value in results.items():
        lines += [f"### {name}", describe_result(value, (digests or {}).get(name))]
    return "\n".join(lines)


def prompt_variable(
    results: str,
    budget: BudgetStatus | None,
    failures: Sequence[Sequence[Finding]] = (),
    phase: int = 1,
) -> str:
    """What follows the prefix: phase, `results` (a `results_section`), budget, last rejection."""
    lines = [f"## Phase {phase}", "", results]
    if budget is not None:
        lines += ["", "## Budget used so far", budget.describe()]
    if failures:
        lines += ["", "## Your previous answer was rejected"]
        rejected = failures[-1]
        for finding in rejected[:MAX_PROMPT_FINDINGS]:
            lines.append(f"- {finding}")
        if len(rejected) > MAX_PROMPT_FINDINGS:
            lines.append(f"- ... and {len(rejected) - MAX_PROMPT_FINDINGS} more problems")
        lines.append("Fix every point above and answer again with a complete fragment.")
    return "\n".join(lines) + "\n"


def describe_result(value: StepValue, digest: str | None = None) -> str:
    """A result for the prompt: verbatim, summarised, or by reference, by its size.

    `digest` is the model's summary of the result (see `digest_call`); it is shown for results
    between STRUCTURED_BYTES and DIGEST_BYTES.
    """
    loaded = value.load()
    if nested_deeper_than(loaded, MAX_RESULT_DEPTH):
        return (
            f"{value.kind.value}, not shown: nested deeper than the limit of {MAX_RESULT_DEPTH} "
            "levels (MAX_RESULT_DEPTH)"
        )
    as_json = _to_json(loaded)
    size = len(as_json.encode("utf-8"))
    if size <= VERBATIM_BYTES:
        return f"{value.kind.value}, verbatim:\n{as_json}"
    # Stable facts (kind, columns) first and sizes last, so calls share a longer prefix.
    summary = _summary(loaded)
    if size <= DIGEST_BYTES:
        text = f"{value.kind.value}, summarised:\n{json.dumps(summary)}\n({size:,} bytes)"
        if digest and size > STRUCTURED_BYTES:
            text += f"\nSummary by the model:\n{digest.strip()}"
        return text
    payload = value.payload
    where = f" at {payload.path}" if isinstance(payload, TableRef) else ""
    summary.pop("value_counts", None)
    return (
        f"{value.kind.value}, by reference (schema and sample):\n"
        f"{json.dumps(summary)}\n({size:,} bytes{where})"
    )


def digest_call(name: str, value: StepValue) -> ModelCall | None:
    """The model call that summarises result `name`, or None when its size needs no digest.

    Results between STRUCTURED_BYTES and DIGEST_BYTES of JSON get one; the instructions come
    first, so the digest calls of a run share a prefix.
    """
    loaded = value.load()
    if nested_deeper_than(loaded, MAX_RESULT_DEPTH):
        return None
    as_json = _to_json(loaded)
    if not STRUCTURED_BYTES < len(as_json.encode("utf-8")) <= DIGEST_BYTES:
        return None
    return ModelCall(
        purpose="summarise",
        prompt=f"{DIGEST_INSTRUCTIONS}Result `{name}` ({value.kind.value}):\n{as_json}",
        max_new_tokens=DIGEST_MAX_TOKENS,
        subject=_plain_text(loaded),
    )


def _plain_text(value: Any) -> str:
    """The result as sentences (one per row for records), what a rule-based model reads."""
    rows = value.to_pylist() if isinstance(value, pa.Table) else value
    if isinstance(rows, list) and all(isinstance(row, dict) for row in rows):
        return " ".join(
            "; ".join(f"{k}: {v}" for k, v in row.items()).rstrip(".") + "." for row in rows
        )
    return _to_json(value)


def _to_json(value: Any) -> str:
    if isinstance(value, pa.Table):
        value = value.to_pylist()
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    return json.dumps(value, default=_jsonable, sort_keys=True)


def _jsonable(value: Any) -> Any:
    return value.model_dump(mode="json") if hasattr(value, "model_dump") else str(value)


def _summary(value: Any) -> dict[str, Any]:
    rows = value.to_pylist() if isinstance(value, pa.Table) else value
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        text = _to_json(value)
        return {"type": type(value).__name__, "head": text[:VERBATIM_BYTES]}
    columns = list(dict.fromkeys(key for row in rows for key in row))
    summary: dict[str, Any] = {"columns": {}, "rows": len(rows), "value_counts": {}}
    for column in columns:
        values = [row.get(column) for row in rows if row.get(column) is not None]
        summary["columns"][column] = type(values[0]).__name__ if values else "null"
        counts = _category_counts(values, len(rows))
        if counts:
            summary["value_counts"][column] = counts
    summary["sample"] = [
        {k: (str(v)[:SAMPLE_CHARS] if isinstance(v, str) else v) for k, v in row.items()}
        for row in rows[:SAMPLE_ROWS]
    ]
    return summary


def _category_counts(values: list[Any], rows: int) -> dict[str, int] | None:
    """Counts per value for a categorical column (few, short, repeated values), else None."""
    if not values or any(isinstance(v, str) and len(v) > CATEGORY_CHARS for v in values):
        return None
    counts: dict[str, int] = {}
    for item in values:
        counts[str(item)] = counts.get(str(item), 0) + 1
    if len(counts) > min(DISTINCT_LIMIT, max(rows // 2, 1)):
        return None
    return dict(sorted(counts.items()))

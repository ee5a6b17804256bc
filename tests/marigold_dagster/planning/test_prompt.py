"""The planner prompt: a byte-identical prefix, and results shown by their size."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from grammar_ops import Kind
from marigold_dagster.artifacts import StepValue, store_value
from marigold_dagster.planning.budget import BudgetStatus, BudgetUse
from marigold_dagster.planning.prompt import (
    DIGEST_BYTES,
    STRUCTURED_BYTES,
    VERBATIM_BYTES,
    describe_result,
    digest_call,
    prompt_variable,
    results_section,
)
from marigold_dagster.runtime.planned import PlanProgress, plan_request
from marigold_dagster.template.loader import load_template

ROOT = Path(__file__).parents[3]


def rows(n: int, text_chars: int = 60) -> pa.Table:
    """`n` contract-like rows, about `text_chars + 50` bytes each as JSON."""
    return pa.table(
        {
            "id": [f"c{i:05d}" for i in range(n)],
            "risk": [("high", "medium", "low")[i % 3] for i in range(n)],
            "text": [f"Contract {i}. " + "x" * text_chars for i in range(n)],
        }
    )


def json_bytes(table: pa.Table) -> int:
    return len(json.dumps(table.to_pylist(), sort_keys=True).encode())


@pytest.fixture
def result(tmp_path: Path):
    def make(table: pa.Table) -> StepValue:
        return store_value("triage", table, tmp_path)

    return make


def test_a_small_result_is_shown_verbatim(result):
    table = rows(3, text_chars=10)
    assert json_bytes(table) <= VERBATIM_BYTES
    text = describe_result(result(table))
    assert text.startswith("table, verbatim:") and "c00002" in text
    assert digest_call("triage", result(table)) is None


def test_a_mid_sized_result_gets_a_structured_summary_and_no_digest(result):
    table = rows(40)
    assert VERBATIM_BYTES < json_bytes(table) <= STRUCTURED_BYTES
    text = describe_result(result(table), digest="ignored for this size")
    summary = json.loads(text.splitlines()[1])
    assert summary["rows"] == 40
    assert summary["value_counts"]["risk"] == {"high": 14, "low": 13, "medium": 13}
    assert "ignored for this size" not in text
    assert digest_call("triage", result(table)) is None


def test_a_result_of_10_to_100_kb_gets_a_model_digest_after_its_structured_summary(result):
    table = rows(300)
    assert STRUCTURED_BYTES < json_bytes(table) <= DIGEST_BYTES
    call = digest_call("triage", result(table))
    assert call is not None and call.purpose == "summarise" and call.max_new_tokens == 300
    assert call.prompt.startswith("Summarise the step result below")
    assert "Result `triage` (table):" in call.prompt and "c00299" in call.prompt
    text = describe_result(result(table), digest="Three hundred contracts, a third high risk.")
    assert json.loads(text.splitlines()[1])["rows"] == 300
    assert text.endswith("Summary by the model:\nThree hundred contracts, a third high risk.")
    assert "Summary by the model" not in describe_result(result(table)), "no digest, none shown"


def test_a_result_over_100_kb_is_shown_by_reference(result):
    table = rows(1200)
    assert json_bytes(table) > DIGEST_BYTES
    text = describe_result(result(table), digest="not shown")
    assert text.startswith("table, by reference (schema and sample):")
    assert ".parquet" in text and "not shown" not in text and "value_counts" not in text
    assert digest_call("triage", result(table)) is None


def test_the_prefix_is_byte_identical_whatever_the_results_and_the_phase(tmp_path: Path):
    frame = load_template(ROOT / "templates" / "contract_review.yaml")
    step = frame.steps["deep_review"]
    status = BudgetStatus(frame.template.budget, BudgetUse())
    prefixes = set()
    for index, n in enumerate((3, 40, 300)):
        value = store_value(f"route_{index}", rows(n), tmp_path)
        progress = PlanProgress({"route": StepValue("route", Kind.TABLE, value.payload)}, "route")
        request = plan_request(frame, step, progress, status, phase=1 + index % 2)
        prefixes.add(request.prefix())
        results = results_section(request.results)
        variable = prompt_variable(results, request.budget, phase=request.phase)
        assert variable.startswith(f"## Phase {request.phase}")
    assert len(prefixes) == 1
    (prefix,) = prefixes
    assert "## Goal" in prefix and "## Results available" not in prefix

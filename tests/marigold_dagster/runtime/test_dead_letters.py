"""Dead letters: a batch over a faulty model server loses no row, and the failed rows rerun alone.

`llm.classify` (through `classify_records`) calls `SGLangResource` on the SGLang-compatible test
server, which injects HTTP 500, 503 and 429, hangs (past the resource's request timeout),
dropped connections, cut-off answers and invalid answers in 10% of requests. The resource makes
one attempt per call, so faults reach the batch layer, which isolates failing chunks row by row.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dagster import DagsterInstance

from grammar_ops import standard_catalog
from marigold_dagster.jobs.compiler import compile_frame
from marigold_dagster.records.run_summary import summarise_run
from marigold_dagster.runs.local_run import input_run_config
from marigold_dagster.runtime import dead_letters
from marigold_dagster.runtime.dead_letters import (
    dead_letter,
    dead_letter_table,
    strip_dead_letter_columns,
)
from marigold_dagster.runtime.input_roots import INPUT_ROOTS_ENV
from marigold_dagster.template.loader import load_template
from resources.model_errors import ModelAnswerError
from resources.sglang import SGLangResource
from resources.sglang_test_server import FAULT_KINDS, FaultPlan, SGLangTestServer

ROWS = 240
TEMPLATE = """name: triage_faults
version: 1
inputs:
  items: {kind: table}
models: {worker: worker_model}
budget: {max_steps: 50, max_tokens: 10000000, max_cost_usd: 5, max_fanout: 64}
steps:
  - {name: load, uses: acquire.read_table, with: {input: items}}
  - name: triage
    kind: batch
    depends_on: [load]
    batch: {size: 40, failure_strategy: isolate}
    uses: classify_records
    with: {field: text, labels: [low, medium, high], output_field: risk}
    retry: {max_attempts: 2, backoff: none, delay_s: 0}
  - {name: done, kind: converge, depends_on: [triage]}
"""
FAULTS = FaultPlan(rates={kind: 0.1 / len(FAULT_KINDS) for kind in FAULT_KINDS}, seed=5, hang_s=1.0)


def merge_metadata(result: Any) -> dict[str, Any]:
    for event in result.all_events:
        if event.event_type_value == "STEP_OUTPUT" and event.step_key == "triage__merge":
            return {k: v.value for k, v in event.step_output_data.metadata.items()}
    raise AssertionError("triage__merge produced no output")


@pytest.fixture
def run_triage(write_template, instance: DagsterInstance, tmp_path, monkeypatch):
    monkeypatch.setenv(INPUT_ROOTS_ENV, str(tmp_path))  # the items files are written there
    frame = load_template(write_template("triage_faults", TEMPLATE), standard_catalog())

    def run(server: SGLangTestServer, items: str) -> tuple[Any, dict[str, Any]]:
        model = SGLangResource(
            base_url=server.url,
            model="sglang-test-double",
            retry_max_attempts=1,
            request_timeout_s=0.3,
        )
        job = compile_frame(frame, resource_defs={"worker_model": model})
        result = job.execute_in_process(
            instance=instance,
            run_config=input_run_config(frame, {"items": items}),
            raise_on_error=False,
        )
        assert result.success
        summary = summarise_run(instance, result.run_id, frame)
        return result, {"metadata": merge_metadata(result), "summary": summary}

    return run


@pytest.mark.integration
def test_every_row_is_processed_or_dead_lettered_and_the_dead_letters_rerun_alone(
    run_triage, tmp_path
):
    items = tmp_path / "items.parquet"
    pq.write_table(
        pa.table(
            {
                "item_id": [f"item-{i:04d}" for i in range(ROWS)],
                "text": [f"Contract {i}: standard terms, capped liability." for i in range(ROWS)],
            }
        ),
        items,
    )
    with SGLangTestServer(model="sglang-test-double", faults=FAULTS) as server:
        first, seen = run_triage(server, str(items))
        faults = dict(server.stats().faults)
        meta = seen["metadata"]
        processed = pq.read_table(meta["marigold/output_path"]).to_pylist()
        letters = pq.read_table(meta["marigold/dead_letters_path"]).to_pylist()

        # No loss, no duplicate, by key: every item is processed or dead-lettered, once.
        done_keys = Counter(row["item_id"] for row in processed)
        dead_keys = Counter(row["item_id"] for row in letters)
        assert max(done_keys.values()) == 1 and max(dead_keys.values()) == 1
        assert not set(done_keys) & set(dead_keys)
        assert set(done_keys) | set(dead_keys) == {f"item-{i:04d}" for i in range(ROWS)}
        assert all(row["risk"] in ("low", "medium", "high") for row in processed)
        assert set(faults) == set(FAULT_KINDS), faults
        assert 0 < len(letters) < ROWS // 3, len(letters)

        # Each dead letter: the row's own columns, its index, error, tries, last answer if any.
        for letter in letters:
            assert letter["item_id"] == f"item-{letter['_dead_letter_row']:04d}"
            assert letter["text"].startswith("Contract ")
            assert letter["_dead_letter_step"] == "triage"
            assert letter["_dead_letter_error"]
            assert letter["_dead_letter_attempts"] >= 2
            assert letter["_dead_letter_model_attempts"] == 1
        answers = [r for r in letters if r["_dead_letter_error_type"] == "ModelAnswerError"]
        assert answers and all(r["_dead_letter_last_response"] is not None for r in answers)
        assert {r["_dead_letter_error_type"] for r in letters} <= {
            "ModelAnswerError",
            "ModelServerError",
        }

        # The merge and the run summary reconcile: rows in = processed + dead-lettered.
        line = f"{ROWS} rows: {len(processed)} processed, {len(letters)} dead-lettered"
        assert meta["marigold/reconciliation"] == line
        assert (meta["marigold/rows_in"], meta["marigold/rows_dead_lettered"]) == (
            ROWS,
            len(letters),
        )
        assert seen["summary"].step("triage").detail.endswith(line)

        # A second run over the dead letters (faults off) processes exactly those rows.
        server.set_faults(FaultPlan())
        server.reset_stats()
        second, again = run_triage(server, meta["marigold/dead_letters_path"])
        rerun = pq.read_table(again["metadata"]["marigold/output_path"])
        assert sorted(rerun["item_id"].to_pylist()) == sorted(dead_keys)
        assert not [c for c in rerun.column_names if c.startswith(dead_letters.PREFIX)]
        assert again["metadata"]["marigold/rows_dead_lettered"] == 0
        assert server.stats().prompts_received == len(letters), "one model call per dead letter"


def test_a_dead_letter_table_keeps_the_row_and_is_read_back_without_its_extra_columns():
    source = pa.table({"id": [10, 11, 12], "text": ["a", "b", "c"]})
    cut_off = ModelAnswerError("the answer was cut off", retries=2)
    cut_off.last_response = "hi"
    letters = [
        dead_letter(2, RuntimeError("row 2 failed"), 3, [cut_off]),
        dead_letter(0, ValueError("bad row"), 1),
    ]
    table = dead_letter_table(source, letters, "triage")
    rows = table.to_pylist()
    assert [row["id"] for row in rows] == [10, 12], "row order, original columns"
    assert rows[1]["_dead_letter_error_type"] == "ModelAnswerError"
    assert (rows[1]["_dead_letter_model_attempts"], rows[1]["_dead_letter_last_response"]) == (
        3,
        "hi",
    )
    assert rows[0]["_dead_letter_error_type"] == "ValueError"
    assert rows[0]["_dead_letter_last_response"] is None
    assert strip_dead_letter_columns(table).column_names == ["id", "text"]
    again = dead_letter_table(table, [dead_letter(0, ValueError("again"), 1)], "triage")
    assert again.column_names == table.column_names, "no doubled dead-letter columns"

"""Batch steps: cursor chunks as dynamic outputs, failure strategies, retries and the cap."""

from __future__ import annotations

import pytest

HEADER = """
version: 1
budget: {max_steps: 50, max_tokens: 1000, max_cost_usd: 1, max_fanout: 8}
"""


def batch_template(
    name: str, rows: int, size: int, strategy: str, capability: str, retry: str = ""
) -> str:
    return f"""name: {name}{HEADER}steps:
  - {{name: load, uses: t.rows, with: {{n: {rows}}}}}
  - name: work
    kind: batch
    depends_on: [load]
    batch: {{size: {size}, failure_strategy: {strategy}}}
    uses: {capability}
{retry}  - {{name: done, kind: converge, depends_on: [work]}}
"""


def chunk_keys(run) -> list[str]:
    return [key for key in run.started if key.startswith("work[")]


def merge_metadata(run) -> dict:
    for event in run.result.all_events:
        if event.event_type_value == "STEP_OUTPUT" and event.step_key == "work__merge":
            return {k: v.value for k, v in event.step_output_data.metadata.items()}
    raise AssertionError("work__merge produced no output")


def test_zero_rows_still_converges(run_template, instance):
    run = run_template("empty", batch_template("empty", 0, 5, "fail_fast", "t.mark"), instance)
    assert run.result.success
    assert chunk_keys(run) == []
    assert run.rows("work__merge") == []
    assert "done" in run.started
    assert merge_metadata(run)["marigold/chunks"] == 0


def test_rows_not_a_multiple_of_the_chunk_size(run_template, instance):
    run = run_template("ragged", batch_template("ragged", 23, 5, "fail_fast", "t.mark"), instance)
    assert run.result.success
    assert sorted(chunk_keys(run)) == sorted(
        [
            "work[rows_0_4]",
            "work[rows_5_9]",
            "work[rows_10_14]",
            "work[rows_15_19]",
            "work[rows_20_22]",
        ]
    )
    rows = run.rows("work__merge")
    assert [row["id"] for row in rows] == list(range(23)), "merged in row order, each row once"
    assert {row["trail"] for row in rows} == {"load>work"}
    metadata = merge_metadata(run)
    assert (metadata["marigold/rows_in"], metadata["marigold/rows_out"]) == (23, 23)
    assert run.summary.step("work").detail == "5 chunks, 23 of 23 rows out, 0 failed"


def test_a_batch_without_a_size_takes_the_measured_default(run_template, instance):
    from marigold_dagster.template.model import DEFAULT_BATCH_ROWS, BatchSpec

    assert BatchSpec().size == DEFAULT_BATCH_ROWS
    rows = 23
    template = batch_template("sized", rows, 5, "fail_fast", "t.mark").replace("size: 5, ", "")
    run = run_template("sized", template, instance)
    assert run.result.success
    assert chunk_keys(run) == [f"work[rows_0_{rows - 1}]"], "one chunk of up to the default"


POISON = "t.poison\n    with: {bad_ids: [7]}\n"


def test_fail_fast_fails_the_run_and_later_chunks_stand_down(run_template, instance):
    run = run_template("ff", batch_template("ff", 20, 5, "fail_fast", POISON), instance)
    assert not run.result.success
    failed = [e.step_key for e in run.result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failed == ["work[rows_5_9]"]
    outputs = {e.step_key for e in run.result.all_events if e.event_type_value == "STEP_OUTPUT"}
    assert "work[rows_0_4]" in outputs
    assert not {"work[rows_10_14]", "work[rows_15_19]"} & outputs, "chunks after the failure"
    assert "work__merge" not in run.started
    summary = run.summary.step("work")
    assert summary.status == "failed" and "rows [7] are poison" in summary.detail
    assert run.summary.step("done").status == "not_run"


def test_continue_records_the_failed_chunk_and_finishes_the_rest(run_template, instance):
    run = run_template("cont", batch_template("cont", 20, 5, "continue", POISON), instance)
    assert run.result.success
    ids = [row["id"] for row in run.rows("work__merge")]
    assert ids == [*range(0, 5), *range(10, 20)]
    metadata = merge_metadata(run)
    assert metadata["marigold/status"] == "partial"
    assert metadata["marigold/chunks_failed"] == 1
    assert (
        metadata["marigold/rows_in"],
        metadata["marigold/rows_out"],
        metadata["marigold/rows_failed"],
    ) == (20, 15, 5)
    assert r"row 5: rows \[7\] are poison" in metadata["marigold/failed_rows_preview"]
    assert run.summary.step("work").status == "partial"
    assert "done" in run.started


def test_isolate_sets_aside_only_the_bad_rows(run_template, instance):
    run = run_template("iso", batch_template("iso", 20, 5, "isolate", POISON), instance)
    assert run.result.success
    ids = [row["id"] for row in run.rows("work__merge")]
    assert ids == [i for i in range(20) if i != 7]
    metadata = merge_metadata(run)
    assert (metadata["marigold/rows_out"], metadata["marigold/rows_failed"]) == (19, 1)
    assert metadata["marigold/chunks_partial"] == 1
    import pyarrow.parquet as pq

    failures = pq.read_table(metadata["marigold/failed_rows_path"]).to_pylist()
    assert [row["row"] for row in failures] == [7]
    assert "rows [7] are poison" in failures[0]["error"]
    letters = pq.read_table(metadata["marigold/dead_letters_path"]).to_pylist()
    assert [(row["id"], row["trail"], row["_dead_letter_row"]) for row in letters] == [
        (7, "load", 7)
    ], "the dead letter keeps the row's own columns"
    assert letters[0]["_dead_letter_error_type"] == "PrimitiveError"
    assert metadata["marigold/reconciliation"] == "20 rows: 19 processed, 1 dead-lettered"
    assert run.summary.step("work").detail.endswith("; 20 rows: 19 processed, 1 dead-lettered")


def test_a_chunk_retry_succeeds_on_the_second_attempt(run_template, instance, tmp_path):
    capability = f't.flaky\n    with: {{state_dir: "{tmp_path}", failures: 1}}\n'
    retry = "    retry: {max_attempts: 2, backoff: none, delay_s: 0}\n"
    run = run_template(
        "flaky", batch_template("flaky", 10, 5, "fail_fast", capability, retry), instance
    )
    assert run.result.success
    restarted = [
        e.step_key for e in run.result.all_events if e.event_type_value == "STEP_RESTARTED"
    ]
    assert sorted(restarted) == ["work[rows_0_4]", "work[rows_5_9]"]
    assert [row["id"] for row in run.rows("work__merge")] == list(range(10))
    attempts = {
        e.step_key: e.step_output_data.metadata["marigold/attempt"].value
        for e in run.result.all_events
        if e.event_type_value == "STEP_OUTPUT" and e.step_key.startswith("work[")
    }
    assert attempts == {"work[rows_0_4]": 2, "work[rows_5_9]": 2}


def test_retries_exhausted_under_continue_records_the_chunk(run_template, instance, tmp_path):
    capability = f't.flaky\n    with: {{state_dir: "{tmp_path}", failures: 5}}\n'
    retry = "    retry: {max_attempts: 2, backoff: none, delay_s: 0}\n"
    run = run_template(
        "exhaust", batch_template("exhaust", 5, 5, "continue", capability, retry), instance
    )
    assert run.result.success
    metadata = merge_metadata(run)
    assert metadata["marigold/rows_failed"] == 5
    assert "transient failure 2 of 5" in metadata["marigold/failed_rows_preview"]


@pytest.mark.parametrize("rows", [41, 100])
def test_fanning_out_past_the_cap_fails_the_split_naming_the_cap(run_template, instance, rows):
    run = run_template("capped", batch_template("capped", rows, 5, "fail_fast", "t.mark"), instance)
    assert not run.result.success
    detail = run.summary.step("work").detail
    chunks = -(-rows // 5)
    assert f"would fan out into {chunks} chunks ({rows} rows at batch.size 5)" in detail
    assert "over its cap of 8 (max_fanout)" in detail
    assert chunk_keys(run) == []


def test_batch_runs_on_the_postgres_instance(run_template, postgres_instance):
    run = run_template(
        "batch_pg", batch_template("batch_pg", 12, 5, "isolate", POISON), postgres_instance
    )
    assert run.result.success
    assert [row["id"] for row in run.rows("work__merge")] == [i for i in range(12) if i != 7]
    assert postgres_instance.get_run_by_id(run.result.run_id).is_success


def check_evaluations(run) -> list:
    return [
        e.event_specific_data
        for e in run.result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    ]


def test_the_merge_reports_dead_letters_as_an_asset_check(run_template, instance):
    run = run_template("checked", batch_template("checked", 20, 5, "isolate", POISON), instance)
    [check] = check_evaluations(run)
    assert check.asset_key.path == ["checked", "work"]
    assert check.check_name == "every_row_processed"
    assert check.passed is False and check.severity.value == "WARN"
    assert check.metadata["marigold/reconciliation"].value == (
        "20 rows: 19 processed, 1 dead-lettered"
    )


def test_chunks_log_progress_while_the_batch_runs(run_template, instance):
    run = run_template(
        "progress", batch_template("progress", 23, 5, "fail_fast", "t.mark"), instance
    )
    lines = [entry.user_message for entry in instance.all_logs(run.result.run_id)]
    progress = sorted(line for line in lines if " done, rows " in line)
    assert len(progress) == 5
    assert progress[0].startswith("batch 'work': chunk 1 of 5 done, rows 0-4, 5 rows in ")
    assert progress[-1].startswith("batch 'work': chunk 5 of 5 done, rows 20-22, 3 rows in ")
    assert all(line.endswith("rows/s)") for line in progress)

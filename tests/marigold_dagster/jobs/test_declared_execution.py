"""What a template declares is what runs, where two features meet.

A converge after a batch, a batch with no rows out, a capability configured for a field the
input lacks, a combine of differently shaped results, and the flagship's report.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from dagster import DagsterInstance

from marigold_dagster.jobs.compiler import compile_frame
from marigold_dagster.template.loader import load_template
from resources.offline_model import OfflineModel
from tests.support.template_run import TemplateRun

ROOT = Path(__file__).resolve().parents[3]
HEADER = """version: 1
models: {worker: worker_model}
budget: {max_steps: 50, max_tokens: 100000, max_cost_usd: 1, max_fanout: 16}
"""


def output_metadata(run: TemplateRun, key: str) -> dict:
    for event in run.result.all_events:
        if event.event_type_value == "STEP_OUTPUT" and event.step_key == key:
            return {k: v.value for k, v in event.step_output_data.metadata.items()}
    raise AssertionError(f"{key} produced no output")


def test_a_converge_after_a_batch_receives_every_row(run_template, instance):
    run = run_template(
        "batch_then_converge",
        f"""name: batch_then_converge
{HEADER}steps:
  - {{name: load, uses: t.rows, with: {{n: 5}}}}
  - {{name: work, kind: batch, depends_on: [load], batch: {{size: 2}}, uses: t.mark}}
  - {{name: done, kind: converge, depends_on: [work]}}
""",
        instance,
    )
    assert run.result.success
    rows = run.rows("done")
    assert [row["id"] for row in rows] == [0, 1, 2, 3, 4]
    assert {row["source_step"] for row in rows} == {"work"}
    metadata = output_metadata(run, "done")
    assert metadata["marigold/not_run_upstream"] == "(none)"


def test_a_converge_over_a_batch_branch_and_a_task_branch_joins_both(run_template, instance):
    run = run_template(
        "branches",
        f"""name: branches
{HEADER}steps:
  - {{name: load, uses: t.rows, with: {{n: 3}}}}
  - name: route
    kind: decision
    depends_on: [load]
    uses: t.route
    with: {{choose: [work, note]}}
    branches: [work, note]
  - {{name: work, kind: batch, depends_on: [route], batch: {{size: 2}}, uses: t.mark}}
  - {{name: note, depends_on: [route], uses: t.mark}}
  - {{name: done, kind: converge, depends_on: [work, note]}}
""",
        instance,
    )
    assert run.result.success
    sources = [row["source_step"] for row in run.rows("done")]
    assert sources == ["work"] * 3 + ["note"] * 3


def test_a_batch_whose_every_row_is_dead_lettered_keeps_its_columns(run_template, instance):
    run = run_template(
        "all_dead",
        f"""name: all_dead
{HEADER}steps:
  - {{name: load, uses: t.rows, with: {{n: 4}}}}
  - name: work
    kind: batch
    depends_on: [load]
    batch: {{size: 2, failure_strategy: isolate}}
    uses: t.poison
    with: {{bad_ids: [0, 1, 2, 3]}}
  - {{name: counted, depends_on: [work], uses: aggregate.count, with: {{by: [trail]}}}}
""",
        instance,
    )
    assert run.result.success
    merged = run.result.output_for_node("work__merge").load()
    assert merged.num_rows == 0 and merged.column_names == ["id", "trail"]
    counted = run.result.output_for_node("counted").load()
    assert counted.num_rows == 0 and counted.column_names == ["trail", "count"]


def test_a_header_only_csv_keeps_its_columns_through_batch_aggregate_and_decision(
    catalog, tmp_path: Path, instance: DagsterInstance
):
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "rows.csv").write_text("contract_id,text\n")
    (folder / "empty_csv.yaml").write_text(
        f"""name: empty_csv
{HEADER}inputs:
  rows: {{kind: table, default: rows.csv}}
steps:
  - {{name: load, uses: acquire.read_table, with: {{input: rows}}}}
  - name: triage
    kind: batch
    depends_on: [load]
    batch: {{size: 10, failure_strategy: isolate}}
    uses: classify_records
    with: {{field: text, labels: [low, high], output_field: risk}}
  - {{name: counted, depends_on: [triage], uses: aggregate.count, with: {{by: [risk]}}}}
  - name: route
    kind: decision
    depends_on: [triage]
    uses: decide.rules
    with: {{rules: [{{if: "count(risk == 'high') > 0", then: [review]}}], else: [skip]}}
    branches: [review, skip]
  - {{name: review, depends_on: [route], uses: t.mark}}
  - {{name: skip, depends_on: [route], uses: t.mark}}
"""
    )
    frame = load_template(folder / "empty_csv.yaml", catalog)
    job = compile_frame(frame, resource_defs={"worker_model": OfflineModel()})
    result = job.execute_in_process(instance=instance, raise_on_error=False)
    assert result.success
    merged = result.output_for_node("triage__merge").load()
    assert merged.num_rows == 0 and merged.column_names == ["contract_id", "text", "risk"]
    counted = result.output_for_node("counted").load()
    assert counted.column_names == ["risk", "count"] and counted.num_rows == 0
    assert pa.types.is_integer(counted.schema.field("count").type)
    started = {e.step_key for e in result.all_events if e.event_type_value == "STEP_START"}
    assert "skip" in started and "review" not in started, "no high-risk row: else, by the rule"


def test_a_batch_classifying_a_missing_field_fails_before_any_model_call(run_template, instance):
    run = run_template(
        "no_text",
        f"""name: no_text
{HEADER}steps:
  - {{name: load, uses: t.rows, with: {{n: 6}}}}
  - name: triage
    kind: batch
    depends_on: [load]
    batch: {{size: 3, failure_strategy: isolate}}
    uses: classify_records
    with: {{field: text, labels: [low, high]}}
    retry: {{max_attempts: 3, delay_s: 0}}
  - {{name: done, kind: converge, depends_on: [triage]}}
""",
        instance,
        resources={"worker_model": OfflineModel()},
    )
    assert not run.result.success
    failures = [e for e in run.result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failures and all(e.step_key.startswith("triage[") for e in failures)
    assert not [e for e in run.result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    data = failures[0].step_failure_data.user_failure_data
    assert "`text`" in data.description and "available fields: id, trail" in data.description
    assert data.metadata["marigold/failure"].value == "permanent"
    assert "triage__merge" not in run.started, "no dead letters: the step failed"


def test_combine_join_matches_rows_on_keys_and_keeps_integers(run_template, instance):
    run = run_template(
        "joined",
        f"""name: joined
{HEADER}steps:
  - {{name: load, uses: t.rows, with: {{n: 4}}}}
  - {{name: counts, depends_on: [load], uses: aggregate.count, with: {{by: [trail]}}}}
  - {{name: marked, depends_on: [load], uses: t.mark}}
  - name: report
    kind: converge
    depends_on: [counts, load]
    combine: join
    keys: [trail]
""",
        instance,
    )
    assert run.result.success
    table = run.result.output_for_node("report").load()
    assert table.num_rows == 4
    assert pa.types.is_integer(table.schema.field("count").type)
    assert pa.types.is_integer(table.schema.field("id").type)
    assert table.column("count").to_pylist() == [4, 4, 4, 4]


def test_combine_by_source_hands_on_each_result_by_name(run_template, instance):
    run = run_template(
        "by_source",
        f"""name: by_source
{HEADER}steps:
  - {{name: load, uses: t.rows, with: {{n: 2}}}}
  - {{name: counts, depends_on: [load], uses: aggregate.count, with: {{by: [trail]}}}}
  - {{name: both, kind: converge, depends_on: [load, counts], combine: by_source}}
""",
        instance,
    )
    assert run.result.success
    value = run.result.output_for_node("both").load()
    assert set(value) == {"load", "counts"}


def test_the_flagship_report_holds_the_extracted_terms_and_the_counts(instance):
    frame = load_template(ROOT / "templates" / "contract_review.yaml")
    model = OfflineModel()
    job = compile_frame(frame, resource_defs={"planner_model": model, "worker_model": model})
    result = job.execute_in_process(instance=instance, raise_on_error=False)
    assert result.success
    receipt = result.output_for_node("finalize").load()
    report = pq.read_table(receipt["path"])
    assert {"risk", "count", "contract_id", "liability"} <= set(report.column_names)
    assert pa.types.is_integer(report.schema.field("count").type), "counts stay integers"
    rows = report.to_pylist()
    assert {row["risk"] for row in rows} == {"high", "medium", "low"}
    high = [row for row in rows if row["risk"] == "high"]
    assert len(high) == high[0]["count"], "one row per high-risk contract, beside its count"
    assert all(row["liability"] for row in high), "the terms the review extracted"

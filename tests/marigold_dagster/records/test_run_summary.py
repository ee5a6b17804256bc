"""The run summary: every template step, its fate and the reason, recorded in the run's log."""

from __future__ import annotations

from dagster import DagsterEventType, build_run_status_sensor_context

from marigold_dagster.jobs.compiler import compile_frame
from marigold_dagster.jobs.sensors import build_run_summary_sensors
from marigold_dagster.records.run_summary import SUMMARY_MESSAGE, record_run_summary

TEMPLATE = """name: summarised
version: 1
budget: {max_steps: 10, max_tokens: 10, max_cost_usd: 1, max_fanout: 4}
steps:
  - {name: start, uses: t.rows, with: {n: 3}}
  - name: route
    kind: decision
    depends_on: [start]
    uses: t.route
    with: {choose: [fail]}
    branches: [fail, idle]
  - {name: fail, uses: t.poison, with: {bad_ids: [1]}, depends_on: [route]}
  - {name: idle, uses: t.mark, depends_on: [route]}
  - {name: after, uses: t.mark, depends_on: [fail]}
"""


def engine_summaries(instance, run_id):
    return [
        entry
        for entry in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT)
        if entry.dagster_event.message.startswith(SUMMARY_MESSAGE)
    ]


def test_summary_explains_failed_skipped_and_not_run_steps(run_template, instance):
    run = run_template("summarised", TEMPLATE, instance)
    summary = run.summary
    assert summary.status == "FAILURE"
    assert [(s.name, s.status) for s in summary.steps] == [
        ("start", "succeeded"),
        ("route", "succeeded"),
        ("fail", "failed"),
        ("idle", "skipped"),
        ("after", "not_run"),
    ]
    assert "rows [1] are poison" in summary.step("fail").detail
    assert summary.step("idle").detail == (
        "branch 'idle' not chosen by decision 'route' (chose: fail)"
    )
    assert summary.step("after").detail == "upstream 'fail' failed"
    assert summary.step("start").rows == 3
    rendered = summary.render()
    assert rendered.splitlines()[0].endswith("of 'summarised': FAILURE")
    assert len(rendered.splitlines()) == 2 + 5


def test_record_appends_the_summary_to_the_runs_own_log(run_template, instance):
    run = run_template("summarised", TEMPLATE, instance)
    record_run_summary(instance, run.summary)
    [entry] = engine_summaries(instance, run.result.run_id)
    message = entry.dagster_event.message
    assert message == f"{SUMMARY_MESSAGE}: 1 failed, 1 not_run, 1 skipped, 2 succeeded"
    metadata = entry.dagster_event.engine_event_data.metadata
    assert "| idle | task | skipped |" in metadata["marigold/summary"].value


def test_run_status_sensor_records_the_summary_for_a_finished_run(run_template, instance):
    run = run_template("summarised", TEMPLATE.replace("choose: [fail]", "choose: [idle]"), instance)
    assert run.result.success
    job = compile_frame(run.frame)
    on_success, on_failure = build_run_summary_sensors([run.frame], [job])
    assert on_success.name == "marigold_run_summary_on_success"
    context = build_run_status_sensor_context(
        sensor_name=on_success.name,
        dagster_event=run.result.get_run_success_event(),
        dagster_instance=instance,
        dagster_run=instance.get_run_by_id(run.result.run_id),
    )
    on_success(context)
    [entry] = engine_summaries(instance, run.result.run_id)
    assert "3 succeeded" in entry.dagster_event.message

"""Triggers: a watched folder, a schedule and a chained follow-up, evaluated as Dagster does."""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from dagster import (
    DefaultScheduleStatus,
    DefaultSensorStatus,
    build_run_status_sensor_context,
    build_schedule_context,
    build_sensor_context,
)

from marigold_dagster.errors import TemplateError
from marigold_dagster.jobs.definitions import build_defs
from marigold_dagster.jobs.triggers import file_run_key
from marigold_dagster.keys import (
    CORRELATION_TAG,
    PARENT_CORRELATION_TAG,
    PARENT_RUN_TAG,
    TRIGGER_TAG,
)
from marigold_dagster.records.correlation import correlation_tags
from marigold_dagster.template.loader import load_template
from tests.support.trigger_templates import FOLLOW_UP, INTAKE, NIGHTLY, REVIEW


def drop(folder: Path, name: str, text: str = "id\n1\n", age_s: float = 60) -> Path:
    """A file written `age_s` seconds ago."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def assert_new_task(tags: dict[str, str], template: str, version: int) -> None:
    assert tags["marigold/template"] == template
    assert tags["marigold/template_version"] == str(version)
    assert uuid.UUID(tags[CORRELATION_TAG]).version == 4


def test_watch_launches_one_run_per_new_file_exactly_once(
    write_template, catalog, postgres_instance
):
    path = write_template("intake", INTAKE)
    (path.parent / "rules.json").write_text("{}")
    incoming = path.parent / "incoming"
    files = [drop(incoming, name) for name in ("a.csv", "b.csv", "c.csv")]
    drop(incoming, "notes.txt")
    defs = build_defs(path.parent, catalog=catalog)
    watch = defs.resolve_sensor_def("intake_watch")
    assert watch.default_status is DefaultSensorStatus.RUNNING
    assert watch.minimum_interval_seconds == 30

    first = watch.evaluate_tick(build_sensor_context(instance=postgres_instance))
    requests = first.run_requests
    assert len(requests) == 3
    assert [r.run_key for r in requests] == [file_run_key(f, f.stat()) for f in files]
    assert requests[0].run_key == f"a.csv@{files[0].stat().st_mtime_ns}:5"
    for request, file in zip(requests, files, strict=True):
        assert request.run_config == {"ops": {"read": {"config": {"contracts": str(file)}}}}
        assert_new_task(request.tags, "intake", 2)
        assert PARENT_CORRELATION_TAG not in request.tags
        assert request.tags[TRIGGER_TAG] == "watch"
    assert len({r.tags[CORRELATION_TAG] for r in requests}) == 3, "one task per file"

    # The request runs as Dagster would launch it: its run config is valid and reaches the step.
    job = defs.resolve_job_def("intake")
    result = job.execute_in_process(
        run_config=requests[0].run_config, tags=requests[0].tags, instance=postgres_instance
    )
    assert result.success
    assert result.output_for_node("read").load() == str(files[0])
    assert result.dagster_run.tags[CORRELATION_TAG] == requests[0].tags[CORRELATION_TAG]

    second = watch.evaluate_tick(
        build_sensor_context(instance=postgres_instance, cursor=first.cursor)
    )
    assert second.run_requests == []
    assert "no new settled file matching '*.csv'" in second.skip_message

    # A new file and a rewritten one (new mtime) are new deliveries; the others are not.
    drop(incoming, "d.csv")
    drop(incoming, "a.csv", "id\n1\n2\n", age_s=30)
    third = watch.evaluate_tick(
        build_sensor_context(instance=postgres_instance, cursor=second.cursor)
    )
    assert sorted(r.run_key.split("@")[0] for r in third.run_requests) == ["a.csv", "d.csv"]


def test_watch_waits_for_a_file_to_settle_and_for_its_folder(write_template, catalog, tmp_path):
    path = write_template("intake", INTAKE.replace("settle_s: 0", "settle_s: 5"))
    (path.parent / "rules.json").write_text("{}")
    watch = build_defs(path.parent, catalog=catalog).resolve_sensor_def("intake_watch")
    missing = watch.evaluate_tick(build_sensor_context())
    assert missing.run_requests == []
    assert f"watched folder {path.parent / 'incoming'} does not exist" in missing.skip_message

    fresh = drop(path.parent / "incoming", "a.csv", age_s=0)
    assert watch.evaluate_tick(build_sensor_context()).run_requests == []
    then = time.time() - 10
    os.utime(fresh, (then, then))
    [request] = watch.evaluate_tick(build_sensor_context()).run_requests
    assert request.run_key.startswith("a.csv@")


def test_schedule_runs_the_batch_with_its_inputs_and_new_task_tags(
    write_template, catalog, postgres_instance
):
    path = write_template("nightly", NIGHTLY)
    schedule = build_defs(path.parent, catalog=catalog).resolve_schedule_def("nightly_schedule")
    assert schedule.cron_schedule == "0 2 * * *"
    assert schedule.execution_timezone == "Europe/Berlin"
    assert schedule.default_status is DefaultScheduleStatus.RUNNING
    context = build_schedule_context(
        instance=postgres_instance, scheduled_execution_time=datetime(2026, 1, 2, 1, tzinfo=UTC)
    )
    [request] = schedule.evaluate_tick(context).run_requests
    expected = str(path.parent / "data" / "c.csv")  # relative to the template file
    assert request.run_config == {"ops": {"read": {"config": {"contracts": expected}}}}
    assert_new_task(request.tags, "nightly", 3)
    assert request.tags[TRIGGER_TAG] == "schedule"
    [again] = schedule.evaluate_tick(context).run_requests
    assert again.tags[CORRELATION_TAG] != request.tags[CORRELATION_TAG], "each night a new task"


def test_after_chains_a_follow_up_of_a_finished_run_with_its_inputs(
    write_template, catalog, postgres_instance, tmp_path
):
    write_template("review", REVIEW)
    path = write_template("follow_up", FOLLOW_UP)
    defs = build_defs(path.parent, catalog=catalog)
    contracts = drop(tmp_path / "templates" / "data", "contracts.csv")  # under an input root
    parent_tags = correlation_tags()
    parent = defs.resolve_job_def("review").execute_in_process(
        run_config={"ops": {"read": {"config": {"contracts": str(contracts)}}}},
        tags=parent_tags,
        instance=postgres_instance,
    )
    assert parent.success
    after = defs.resolve_sensor_def("follow_up_after_review")
    context = build_run_status_sensor_context(
        sensor_name=after.name,
        dagster_event=parent.get_run_success_event(),
        dagster_instance=postgres_instance,
        dagster_run=postgres_instance.get_run_by_id(parent.run_id),
    )
    request = after(context)
    assert request.run_key == f"after:{parent.run_id}"
    assert request.run_config == {"ops": {"read": {"config": {"contracts": str(contracts)}}}}
    assert_new_task(request.tags, "follow_up", 4)
    assert request.tags[PARENT_CORRELATION_TAG] == parent_tags[CORRELATION_TAG]
    assert request.tags[CORRELATION_TAG] != parent_tags[CORRELATION_TAG]
    assert request.tags[PARENT_RUN_TAG] == parent.run_id


def test_after_with_inputs_none_passes_nothing_and_untagged_parents_are_their_own_task(
    write_template, catalog, postgres_instance, tmp_path
):
    write_template("review", REVIEW)
    text = FOLLOW_UP.replace("status: success}", "status: success, inputs: none}")
    text = text.replace("contracts: {kind: table}", "contracts: {kind: table, default: c.csv}")
    path = write_template("follow_up", text)
    defs = build_defs(path.parent, catalog=catalog)
    contracts = drop(tmp_path / "templates" / "data", "contracts.csv")  # under an input root
    parent = defs.resolve_job_def("review").execute_in_process(
        run_config={"ops": {"read": {"config": {"contracts": str(contracts)}}}},
        instance=postgres_instance,
    )
    after = defs.resolve_sensor_def("follow_up_after_review")
    request = after(
        build_run_status_sensor_context(
            sensor_name=after.name,
            dagster_event=parent.get_run_success_event(),
            dagster_instance=postgres_instance,
            dagster_run=postgres_instance.get_run_by_id(parent.run_id),
        )
    )
    assert request.run_config == {}
    assert request.tags[PARENT_CORRELATION_TAG] == parent.run_id


@pytest.mark.parametrize(
    ("triggers", "expected"),
    [
        (
            'watch: {input: contracts, folder: in, patern: "*.csv"}',
            "triggers.watch.patern: unknown field `patern`; valid fields here: input, folder, "
            "pattern, inputs, settle_s, interval_s, enabled",
        ),
        (
            'watch: {input: contracts, folder: in, pattern: "sub/*.csv"}',
            "`pattern` matches file names inside `folder`, so it has no path separator",
        ),
        (
            'schedule: {cron: "daily"}',
            "`cron` takes five fields (minute hour day-of-month month day-of-week)",
        ),
        (
            'schedule: {cron: "0 2 * * *", timezone: Mars/Olympus}',
            "unknown time zone 'Mars/Olympus'; use an IANA name such as UTC or Europe/Berlin",
        ),
        (
            "after: {template: review, inputs: all}",
            "`inputs` is `same` (the parent run's inputs of the same name), `none`, or a "
            "mapping {this template's input: the parent's input} of input names; got 'all'",
        ),
        (
            "after: {template: review, status: done}",
            "; got 'done'",
        ),
    ],
)
def test_trigger_fields_are_validated_with_what_would_be_valid(
    write_template, catalog, triggers, expected
):
    text = INTAKE.replace(
        '  watch: {input: contracts, folder: incoming, pattern: "*.csv", settle_s: 0}',
        f"  {triggers}",
    )
    with pytest.raises(TemplateError) as raised:
        load_template(write_template("intake", text), catalog)
    assert ":8: triggers." in str(raised.value)
    assert expected in str(raised.value)

"""Launch inputs are confined to the input roots, links followed, and errors quote no file.

A launcher chooses input paths (op config, any way a run is launched); a step reads one only
when it resolves under an input root: `MARIGOLD_INPUT_ROOTS`, by default the template's folder
and the instance's storage. The watch trigger ignores links that leave its folder.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance, build_sensor_context
from dagster._serdes import serialize_value

from marigold_dagster.jobs.compiler import compile_frame
from marigold_dagster.jobs.definitions import build_defs
from marigold_dagster.jobs.triggers import settled_files
from marigold_dagster.runtime.input_roots import INPUT_ROOTS_ENV
from marigold_dagster.template.loader import load_template

SECRET = "root:$6$s3cr3t-hash-never-shown:19000:0:99999:7:::"

TEMPLATE = """\
name: reader
version: 1
inputs:
  rows: {kind: table, default: rows.csv}
budget: {max_steps: 20, max_tokens: 1000, max_cost_usd: 1.0, max_fanout: 4}
steps:
  - name: load
    uses: acquire.read_table
    with: {input: rows}
"""


@pytest.fixture
def reader(write_template: Callable[[str, str], Path], catalog: Any) -> Any:
    path = write_template("reader", TEMPLATE)
    (path.parent / "rows.csv").write_text("text\nfine\n")
    return load_template(path, catalog)


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A secret file outside every input root (standing for /etc/shadow)."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    secret = folder / "shadow.csv"
    secret.write_text(f"{SECRET}\n")
    return secret


def run_reading(reader: Any, instance: DagsterInstance, path: Path) -> Any:
    job = compile_frame(reader)
    return job.execute_in_process(
        instance=instance,
        run_config={"ops": {"load": {"config": {"rows": str(path)}}}},
        raise_on_error=False,
    )


def recorded_text(instance: DagsterInstance, run_id: str) -> str:
    records = instance.get_records_for_run(run_id, limit=10_000).records
    return "\n".join(serialize_value(record.event_log_entry) for record in records)


def failure_message(result: Any) -> str:
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failures, "the step did not fail"
    return str(failures[0].step_failure_data.error.message)


def test_an_input_outside_the_roots_is_refused_before_it_is_read(
    reader: Any, instance: DagsterInstance, outside: Path
) -> None:
    result = run_reading(reader, instance, outside)
    assert not result.success
    message = failure_message(result)
    assert "input 'rows' of template 'reader'" in message
    assert "outside the input roots" in message and INPUT_ROOTS_ENV in message
    assert "s3cr3t" not in recorded_text(instance, result.run_id)
    written = [p for p in Path(instance.storage_directory()).rglob("*.parquet")]
    assert written == []


def test_a_link_under_a_root_to_a_file_outside_is_refused(
    reader: Any, instance: DagsterInstance, outside: Path
) -> None:
    link = reader.path.parent / "innocent.csv"
    link.symlink_to(outside)
    result = run_reading(reader, instance, link)
    assert not result.success
    assert f"resolving to {outside}" in failure_message(result)
    assert "s3cr3t" not in recorded_text(instance, result.run_id)


def test_a_configured_root_admits_its_files(
    reader: Any, instance: DagsterInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "shared_data"
    data.mkdir()
    (data / "rows.csv").write_text("text\nfrom the shared folder\n")
    monkeypatch.setenv(INPUT_ROOTS_ENV, os.pathsep.join([str(data), str(tmp_path / "other")]))
    assert run_reading(reader, instance, data / "rows.csv").success
    # Configured roots replace the defaults: the template's own folder is no longer a root.
    (reader.path.parent / "extra.csv").write_text("text\nx\n")
    assert not run_reading(reader, instance, reader.path.parent / "extra.csv").success


def test_the_template_default_and_files_under_the_template_folder_are_read(
    reader: Any, instance: DagsterInstance
) -> None:
    assert compile_frame(reader).execute_in_process(instance=instance).success
    (reader.path.parent / "more.csv").write_text("text\nmore\n")
    assert run_reading(reader, instance, reader.path.parent / "more.csv").success


def test_a_csv_parse_error_does_not_quote_the_file(reader: Any, instance: DagsterInstance) -> None:
    bad = reader.path.parent / "bad.csv"
    bad.write_text(f"user,hash\n{SECRET}\n")
    result = run_reading(reader, instance, bad)
    assert not result.success
    message = failure_message(result)
    assert "CSV parse error: Expected 2 columns, got 1" in message
    assert "s3cr3t" not in recorded_text(instance, result.run_id)


WATCHED = """\
name: watched
version: 1
inputs:
  rows: {kind: table}
triggers:
  watch: {input: rows, folder: incoming, pattern: "*.csv", settle_s: 0}
budget: {max_steps: 20, max_tokens: 1000, max_cost_usd: 1.0, max_fanout: 4}
steps:
  - name: load
    uses: acquire.read_table
    with: {input: rows}
"""


def test_the_watch_trigger_ignores_links_that_leave_its_folder(
    write_template: Callable[[str, str], Path], outside: Path
) -> None:
    path = write_template("watched", WATCHED)
    incoming = path.parent / "incoming"
    incoming.mkdir()
    (incoming / "real.csv").write_text("text\nreal\n")
    (incoming / "inside_link.csv").symlink_to(incoming / "real.csv")
    (incoming / "escape.csv").symlink_to(outside)
    names = [p.name for p, _ in settled_files(incoming, "*.csv", 0, time.time() + 1)]
    assert names == ["inside_link.csv", "real.csv"]

    defs = build_defs(path.parent)
    sensor = defs.resolve_sensor_def("watched_watch")
    with DagsterInstance.ephemeral() as instance:
        result = sensor.evaluate_tick(build_sensor_context(instance=instance))
    launched = [r.run_config["ops"]["load"]["config"]["rows"] for r in result.run_requests or []]
    assert len(launched) == 2
    assert all(Path(p).is_relative_to(incoming) for p in launched)

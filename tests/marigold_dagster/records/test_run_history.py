"""Run history: recent template runs with their budget use, and `marigold runs`."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from dagster import job, op

from marigold_dagster.jobs.definitions import build_defs
from marigold_dagster.keys import CORRELATION_TAG
from marigold_dagster.records.correlation import correlation_tags
from marigold_dagster.records.run_history import recent_runs, render_runs, runs_command
from marigold_dagster.template.loader import load_template
from resources.offline_model import OfflineModel

PROBE = """name: history_probe
version: 3
inputs:
  notes: {kind: table, default: notes.csv}
models: {worker: worker_model}
budget: {max_steps: 10, max_tokens: 100000, max_cost_usd: 1, max_fanout: 4}
steps:
  - {name: load, uses: acquire.read_table, with: {input: notes}}
  - name: label
    depends_on: [load]
    uses: classify_records
    with: {field: text, labels: {urgent: deadline today, routine: weekly report}}
"""


@op
def nothing() -> None:
    pass


@job
def not_a_template() -> None:
    nothing()


@pytest.fixture(scope="module")
def history(tmp_path_factory, postgres_instance):
    """Two runs of `history_probe`, then a run of a job that is no template."""
    folder = tmp_path_factory.mktemp("templates")
    (folder / "history_probe.yaml").write_text(PROBE)
    (folder / "notes.csv").write_text("text\ndeadline today\nthe weekly report\n")
    defs = build_defs(folder, resources={"worker_model": OfflineModel()})
    probe = defs.resolve_job_def("history_probe")
    runs = [
        probe.execute_in_process(tags=correlation_tags(), instance=postgres_instance)
        for _ in range(2)
    ]
    plain = not_a_template.execute_in_process(instance=postgres_instance)
    frame = load_template(folder / "history_probe.yaml")
    return folder, frame, [run.run_id for run in runs], plain.run_id


def test_recent_runs_are_template_runs_newest_first_with_their_use(history, postgres_instance):
    _, frame, run_ids, plain_id = history
    listed = recent_runs(postgres_instance, limit=5, template="history_probe")
    assert [facts.run_id for facts in listed] == run_ids[::-1]
    newest = listed[0]
    assert newest.template == "history_probe" and newest.version == "3"
    assert newest.status == "SUCCESS"
    assert newest.use.steps == 2 and newest.use.tokens > 0
    tagged = postgres_instance.get_run_by_id(run_ids[1]).tags[CORRELATION_TAG]
    assert newest.correlation_id == tagged
    assert [f.run_id for f in recent_runs(postgres_instance, 1, "history_probe")] == [run_ids[1]]
    everything = {f.run_id for f in recent_runs(postgres_instance, limit=1000)}
    assert set(run_ids) <= everything and plain_id not in everything

    line = render_runs(listed[:1], {"history_probe": frame.template})
    assert (
        f"  {run_ids[1][:8]}  history_probe v3  SUCCESS  2 of 10 steps, 0 of 1 phases, "
        f"{newest.use.tokens:,} of 100,000 tokens, $0.00 of $1.00  task {tagged}"
    ) in line
    other_version = frame.template.model_copy(update={"version": 4})
    plain_use = render_runs(listed[:1], {"history_probe": other_version})
    assert f"2 steps, 0 phases, {newest.use.tokens:,} tokens, $0.00  task" in plain_use


def test_runs_command_lists_runs_with_budget_use(history, postgres_instance, tmp_path):
    folder, _, run_ids, _ = history
    env = {"DAGSTER_HOME": postgres_instance.root_directory}
    runner = CliRunner()
    done = runner.invoke(
        runs_command, ["--template", "history_probe", "--templates-dir", str(folder)], env=env
    )
    assert done.exit_code == 0, done.output
    lines = done.stdout.splitlines()
    assert [line.split()[2] for line in lines] == [run_id[:8] for run_id in run_ids[::-1]]
    assert all("2 of 10 steps, 0 of 1 phases" in line for line in lines)

    elsewhere = runner.invoke(
        runs_command,
        ["--template", "history_probe", "--templates-dir", str(tmp_path / "none")],
        env=env,
    )
    assert elsewhere.exit_code == 0
    assert "note: budget ceilings unknown" in elsewhere.stderr
    assert "2 steps, 0 phases" in elsewhere.stdout

    nobody = runner.invoke(runs_command, ["--template", "never_ran"], env=env)
    assert nobody.stdout.strip() == "no template runs in this Dagster instance"

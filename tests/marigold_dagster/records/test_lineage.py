"""Task lineage over a real chain of runs on PostgreSQL, and `marigold lineage`."""

from __future__ import annotations

import uuid

import pytest
from click.testing import CliRunner
from dagster import build_run_status_sensor_context

from marigold_dagster.errors import UnknownCorrelationId
from marigold_dagster.jobs.definitions import build_defs
from marigold_dagster.keys import CORRELATION_TAG
from marigold_dagster.records.correlation import correlation_tags
from marigold_dagster.records.lineage import lineage_command, task_lineage
from marigold_dagster.records.run_summary import record_run_summary, summarise_run
from marigold_dagster.template.loader import load_template
from resources.offline_model import OfflineModel

BUDGET = "budget: {max_steps: 10, max_tokens: 100000, max_cost_usd: 1, max_fanout: 4}"

ROOT = f"""name: root_task
version: 1
models: {{worker: worker_model}}
{BUDGET}
steps:
  - {{name: rows, uses: t.rows, with: {{n: 3}}}}
  - {{name: ask, uses: t.ask_each, depends_on: [rows]}}
"""

FOLLOW_UP = f"""name: follow_task
version: 2
{BUDGET}
triggers:
  after: {{template: root_task, inputs: none}}
steps:
  - {{name: rows, uses: t.rows, with: {{n: 2}}}}
  - {{name: mark, uses: t.mark, depends_on: [rows]}}
"""

BROKEN = f"""name: broken_task
version: 1
{BUDGET}
steps:
  - {{name: rows, uses: t.rows, with: {{n: 2}}}}
  - {{name: poison, uses: t.poison, with: {{bad_ids: [1]}}, depends_on: [rows]}}
"""


@pytest.fixture(scope="module")
def chain(tmp_path_factory, catalog, postgres_instance):
    """root_task -> (follow_task launched by the `after` sensor, broken_task) -> follow_task."""
    folder = tmp_path_factory.mktemp("templates")
    for name, text in (("root_task", ROOT), ("broken_task", BROKEN), ("follow_task", FOLLOW_UP)):
        (folder / f"{name}.yaml").write_text(text)
    defs = build_defs(folder, catalog=catalog, resources={"worker_model": OfflineModel()})
    instance = postgres_instance
    root_tags = correlation_tags()
    root = defs.resolve_job_def("root_task").execute_in_process(tags=root_tags, instance=instance)
    root_frame = load_template(folder / "root_task.yaml", catalog)
    record_run_summary(instance, summarise_run(instance, root.run_id, root_frame))  # as its sensor

    after = defs.resolve_sensor_def("follow_task_after_root_task")
    request = after(
        build_run_status_sensor_context(
            sensor_name=after.name,
            dagster_event=root.get_run_success_event(),
            dagster_instance=instance,
            dagster_run=instance.get_run_by_id(root.run_id),
        )
    )
    follow = defs.resolve_job_def("follow_task").execute_in_process(
        run_config=request.run_config, tags=request.tags, instance=instance
    )
    broken_tags = correlation_tags(parent=root_tags[CORRELATION_TAG])
    broken = defs.resolve_job_def("broken_task").execute_in_process(
        tags=broken_tags, instance=instance, raise_on_error=False
    )
    grandchild_tags = correlation_tags(parent=request.tags[CORRELATION_TAG])
    grandchild = defs.resolve_job_def("follow_task").execute_in_process(
        tags=grandchild_tags, instance=instance
    )
    return {
        "root": (root_tags[CORRELATION_TAG], root.run_id),
        "follow": (request.tags[CORRELATION_TAG], follow.run_id),
        "broken": (broken_tags[CORRELATION_TAG], broken.run_id),
        "grandchild": (grandchild_tags[CORRELATION_TAG], grandchild.run_id),
    }


def test_lineage_climbs_to_the_root_and_prints_every_task_below(chain, postgres_instance):
    follow_id, follow_run = chain["follow"]
    lineage = task_lineage(postgres_instance, follow_id)
    root = lineage.root
    assert root.correlation_id == chain["root"][0]
    assert [child.correlation_id for child in root.children] == [follow_id, chain["broken"][0]]
    assert [g.correlation_id for g in root.children[0].children] == [chain["grandchild"][0]]

    [root_run] = root.runs
    assert root_run.status == "SUCCESS" and root_run.template == "root_task"
    assert root_run.step_counts == {"succeeded": 2}  # template steps, from the run summary
    assert root_run.use.tokens > 0
    assert root.children[1].runs[0].status == "FAILURE"
    assert root.children[1].runs[0].step_counts == {"succeeded": 1, "failed": 1}
    assert root.total_use().tokens == root_run.use.tokens  # only the root asks the model

    text = lineage.render()
    lines = text.splitlines()
    assert lines[0] == f"task {chain['root'][0]}"
    assert lines[1].startswith(f"  run {chain['root'][1][:8]}  root_task v1  SUCCESS  ")
    assert f"steps: 2 succeeded  {root_run.use.tokens:,} tokens  $0.00" in lines[1]
    assert lines[2] == f"  task {follow_id}  <- asked"
    assert lines[3].startswith(f"    run {follow_run[:8]}  follow_task v2  SUCCESS  steps: ")
    assert lines[4] == f"    task {chain['grandchild'][0]}"
    assert lines[6] == f"  task {chain['broken'][0]}"
    assert "broken_task v1  FAILURE  steps: 1 failed, 1 succeeded" in lines[7]
    assert lines[-1] == f"4 tasks, 4 runs, {root_run.use.tokens:,} tokens, $0.00"


def test_a_run_id_finds_its_task(chain, postgres_instance):
    broken_id, broken_run = chain["broken"]
    assert task_lineage(postgres_instance, broken_run).asked == broken_id


def test_an_unknown_id_is_an_error_that_says_where_to_look(postgres_instance):
    with pytest.raises(UnknownCorrelationId, match="`marigold runs` lists recent runs"):
        task_lineage(postgres_instance, str(uuid.uuid4()))


def test_lineage_command_prints_the_chain_and_fails_on_an_unknown_id(chain, postgres_instance):
    runner = CliRunner()
    env = {"DAGSTER_HOME": postgres_instance.root_directory}
    done = runner.invoke(lineage_command, [chain["grandchild"][0]], env=env)
    assert done.exit_code == 0, done.output
    assert done.output.splitlines()[0] == f"task {chain['root'][0]}"
    assert f"task {chain['grandchild'][0]}  <- asked" in done.output

    unknown = str(uuid.uuid4())
    missing = runner.invoke(lineage_command, [unknown], env=env)
    assert missing.exit_code == 1
    assert f"error: no run in this Dagster instance carries correlation id '{unknown}'" in (
        missing.stderr
    )

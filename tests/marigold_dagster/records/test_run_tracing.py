"""Every run of a template carries its task's `marigold/correlation_id`, however it was launched.

One table of launch paths: each launches (or re-executes) a run of the same template and says
which correlation id the run must end up with.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from dagster import DagsterInstance, ReexecutionOptions, build_schedule_context, execute_job

from marigold_dagster.errors import MarigoldError
from marigold_dagster.jobs.model_binding import model_backend
from marigold_dagster.keys import (
    CORRELATION_TAG,
    MODEL_BACKEND_TAG,
    PARENT_CORRELATION_TAG,
    REEXECUTION_OF_TAG,
)
from marigold_dagster.runs.resume import load_definitions, reconstructable_job, resume_run

IN_PROCESS = {"execution": {"config": {"in_process": {}}}}
DEFINITIONS = """
from pathlib import Path

from grammar_ops import standard_catalog
from marigold_dagster.jobs.definitions import build_defs
from tests.support.capabilities import TEST_CAPABILITIES

defs = build_defs(
    Path(__file__).parent / "templates",
    catalog=standard_catalog().extended(TEST_CAPABILITIES),
)
"""
TEMPLATE = """
name: traced
version: 1
budget: {{max_steps: 5, max_tokens: 10, max_cost_usd: 1, max_fanout: 2}}
triggers:
  schedule: {{cron: "0 2 * * *"}}
steps:
  - {{name: load, uses: t.rows, with: {{n: 2}}}}
  - {{name: shaky, depends_on: [load], uses: t.flaky, with: {{state_dir: '{state}', failures: 1}}}}
"""
ROOT = Path(__file__).parents[3]


@dataclass
class Project:
    root: Path
    instance: DagsterInstance

    @property
    def definitions(self) -> Path:
        return self.root / "definitions.py"

    def launch(self, tags: dict[str, str] | None = None) -> str:
        job = reconstructable_job(self.definitions, "traced")
        with execute_job(job, self.instance, run_config=IN_PROCESS, tags=tags) as result:
            return result.run_id

    def reexecute(self, parent: str) -> str:
        job = reconstructable_job(self.definitions, "traced")
        options = ReexecutionOptions.from_failure(parent, self.instance)
        with execute_job(
            job, self.instance, run_config=IN_PROCESS, reexecution_options=options
        ) as result:
            return result.run_id

    def tags(self, run_id: str) -> dict[str, str]:
        run = self.instance.get_run_by_id(run_id)
        assert run is not None
        return dict(run.tags)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    root = tmp_path / "project"
    (root / "templates").mkdir(parents=True)
    (root / "state").mkdir()
    (root / "templates" / "traced.yaml").write_text(TEMPLATE.format(state=root / "state"))
    (root / "definitions.py").write_text(DEFINITIONS)
    monkeypatch.syspath_prepend(str(ROOT))
    (tmp_path / "home").mkdir()
    with DagsterInstance.local_temp(
        str(tmp_path / "home"), overrides={"telemetry": {"enabled": False}}
    ) as instance:
        yield Project(root, instance)


def untagged_launch(p: Project) -> tuple[str, str]:
    run_id = p.launch()
    return run_id, run_id  # a task of its own: its id is its run id


def tagged_launch(p: Project) -> tuple[str, str]:
    return p.launch({CORRELATION_TAG: "task-7"}), "task-7"


def reexecution_of_untagged(p: Project) -> tuple[str, str]:
    first = p.launch()
    return p.reexecute(first), first


def reexecution_of_tagged(p: Project) -> tuple[str, str]:
    first = p.launch({CORRELATION_TAG: "task-8", PARENT_CORRELATION_TAG: "task-1"})
    return p.reexecute(first), "task-8"


def resumed_untagged(p: Project) -> tuple[str, str]:
    """`marigold resume` and `marigold approve`/`reject` resume through `resume_run`."""
    first = p.launch()
    resumed = resume_run(p.instance, first, p.definitions)
    return resumed.run_id, first


def schedule_request(p: Project) -> tuple[str, str]:
    schedule = load_definitions(p.definitions).resolve_schedule_def("traced_schedule")
    (request,) = schedule.evaluate_tick(build_schedule_context(instance=p.instance)).run_requests
    return p.launch(dict(request.tags)), request.tags[CORRELATION_TAG]


LAUNCH_PATHS: dict[str, Callable[[Project], tuple[str, str]]] = {
    "launchpad_or_graphql_untagged": untagged_launch,
    "tagged_by_caller": tagged_launch,
    "reexecution_of_untagged": reexecution_of_untagged,
    "reexecution_of_tagged": reexecution_of_tagged,
    "marigold_resume_or_approve": resumed_untagged,
    "schedule_or_sensor_run_request": schedule_request,
}


@pytest.mark.parametrize("path", LAUNCH_PATHS, ids=list(LAUNCH_PATHS))
def test_every_launch_path_tags_the_run_with_its_task(project: Project, path: str):
    run_id, expected = LAUNCH_PATHS[path](project)
    tags = project.tags(run_id)
    assert tags.get(CORRELATION_TAG) == expected, tags
    run = project.instance.get_run_by_id(run_id)
    assert run is not None
    if run.parent_run_id is not None:
        assert tags[REEXECUTION_OF_TAG] == run.parent_run_id  # the parent run is recorded
    if path == "reexecution_of_tagged":
        assert tags[PARENT_CORRELATION_TAG] == "task-1"


@pytest.mark.slow
def test_dagster_job_execute_run_carries_a_correlation_id(project: Project, tmp_path: Path):
    home = tmp_path / "cli_home"
    home.mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if k != "MARIGOLD_SGLANG_URL"},
        "DAGSTER_HOME": str(home),
        "PYTHONPATH": str(ROOT),
    }
    dagster = Path(sys.executable).with_name("dagster")
    done = subprocess.run(
        [str(dagster), "job", "execute", "-f", str(project.definitions), "-j", "traced"],
        cwd=project.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    with DagsterInstance.from_config(str(home)) as instance:
        (run,) = instance.get_runs()
        assert run.tags.get(CORRELATION_TAG) == run.run_id, done.stderr[-2000:]


def test_a_run_records_its_model_backend_and_resume_refuses_another(
    project: Project, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv("MARIGOLD_SGLANG_URL", raising=False)
    failed = project.launch()
    assert project.tags(failed)[MODEL_BACKEND_TAG] == "offline"
    monkeypatch.setenv("MARIGOLD_SGLANG_URL", "http://user:secret@127.0.0.1:9/")
    with pytest.raises(MarigoldError, match="ran its models on offline, but this process would"):
        resume_run(project.instance, failed, project.definitions)


def test_the_backend_tag_never_carries_credentials():
    tag = model_backend({"MARIGOLD_SGLANG_URL": "https://u:pw@gpu-1:30000/,http://gpu-2"})
    assert tag == "sglang https://gpu-1:30000/,http://gpu-2"

"""A run SIGKILLed at many points, then re-executed from failure, loses and repeats no row.

Each trial runs the batch job in a child process on a persistent instance on the machine's
PostgreSQL, kills it at a point anchored on the run's progress plus a random delay (before the
run exists, before any step, inside the split, inside a chunk, with chunks not yet started,
inside the merge, after the last step, after the run finished), marks the dead run failed and
re-executes it from failure (see `harness/crash_trial.py`). A planned segment
killed after its plan was accepted resumes with that plan: the planner is not asked again.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
from dagster import (
    DagsterInstance,
    DagsterRunStatus,
    ReexecutionOptions,
    build_reconstructable_job,
    execute_job,
)

from harness import crash_trial as crash_resume
from harness.scripted_planner import TEMPLATE, ScriptedPlanner, fragment, step
from resources.sglang_test_server import SGLangTestServer

pytestmark = pytest.mark.slow

ROWS, SIZE = 60, 10


@pytest.fixture(scope="module")
def crash_home(tmp_path_factory: pytest.TempPathFactory, postgres_url: str) -> tuple[Path, str]:
    """A persistent instance on the machine's PostgreSQL, as production would use."""
    folder = tmp_path_factory.mktemp("crash")
    home = folder / "dagster_home"
    crash_resume.write_instance(home, postgres_url)
    template = folder / "crash_batch.yaml"
    template.write_text(crash_resume.crash_template(ROWS, SIZE, seconds_per_row=0.01))
    return home, str(template)


def test_every_row_once_after_a_kill_at_any_point(crash_home):
    home, template = crash_home
    rng = random.Random(7)
    results = []
    with DagsterInstance.from_config(str(home)) as instance:
        for index, point in enumerate(crash_resume.KILL_POINTS):
            result = crash_resume.run_trial(
                instance,
                home,
                template,
                ROWS,
                ROWS // SIZE,
                kill_at=point,
                jitter_s=0.0 if point == "at_spawn" else rng.uniform(0.0, 0.3),
                trial=f"kill-{index}-{point}",
            )
            results.append(result)
            assert (result.rows_lost, result.rows_duplicated) == (0, 0), result
            assert result.rows_out == ROWS, result
    landed = {r.landed for r in results}
    assert {"no_run", "mid_run", "after_success"} <= landed, [r.landed for r in results]
    mid_batch = [r for r in results if r.landed == "mid_run" and 2 <= r.steps_done_at_kill < 8]
    assert mid_batch, "no kill landed between the split and the merge"
    for result in mid_batch:
        assert "work__split" not in result.reexecuted_steps, "a finished split is not re-run"


def planned_job_path(write_template) -> Path:
    text = TEMPLATE.format(rows=3, max_depth=2, max_phases=1, max_steps=30, max_tokens=200_000)
    return write_template(
        "planned", text.replace("        - t.mark\n", "        - t.mark\n        - t.sleep\n")
    )


def test_a_planned_segment_killed_mid_plan_resumes_with_the_accepted_plan(
    write_template, tmp_path, postgres_url
):
    """Kill after the plan was accepted, inside a planned step; re-execution reuses the plan."""
    script = ScriptedPlanner()
    script.answers[:] = [
        fragment(step("mark_all", "t.mark"), step("nap", "t.sleep", ["mark_all"], seconds=1.0))
    ]
    home = tmp_path / "dagster_home"
    crash_resume.write_instance(home, postgres_url)
    path = str(planned_job_path(write_template))
    with (
        SGLangTestServer(model="planner-double", responder=script) as server,
        DagsterInstance.from_config(str(home)) as instance,
    ):
        target = ("tests.support.reexecution_job", "planned_job")
        child = crash_resume.run_child(home, (path, server.url), "planned", target=target)

        def in_a_planned_step(run_id: str | None) -> bool:
            if run_id is None:
                return False
            started, done = crash_resume.step_events(instance, run_id)
            return "review__plan" in done and any(k.startswith("review__L2[") for k in started)

        crash_resume.kill_when(child, in_a_planned_step, instance, "planned", jitter_s=0.2)
        run = crash_resume.find_run(instance, "planned")
        assert run is not None and run.status is DagsterRunStatus.STARTED
        assert len(script.prompts) == 1
        instance.report_run_failed(run, "the run worker was killed (SIGKILL)")

        job = build_reconstructable_job(
            target[0], target[1], reconstructable_args=(path, server.url)
        )
        options = ReexecutionOptions.from_failure(run.run_id, instance)
        started_at = time.perf_counter()
        with execute_job(
            job, instance, run_config=crash_resume.IN_PROCESS, reexecution_options=options
        ) as second:
            assert second.success
            started = [e.step_key for e in second.all_events if e.event_type_value == "STEP_START"]
            rows = second.output_for_node("review").load().to_pylist()
        assert time.perf_counter() - started_at < 60
    assert len(script.prompts) == 1, "the accepted plan was reused, not asked for again"
    assert "review__plan" not in started and "review__L1[mark_all]" not in started
    assert "review__L2[nap]" in started
    assert {row["planned_step"] for row in rows} == {"nap"}

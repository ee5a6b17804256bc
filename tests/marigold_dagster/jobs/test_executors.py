"""Which executor a template job gets, and the Celery queue of each of its steps."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import validate_run_config

from marigold_dagster.errors import MarigoldError
from marigold_dagster.jobs.definitions import build_defs
from marigold_dagster.jobs.executors import CELERY_QUEUE_TAG, celery_queue, executor_name

TEMPLATES = Path(__file__).parents[3] / "templates"


def test_in_process_by_default_template_then_deployment_choose_otherwise():
    assert executor_name(None, {}) == "in_process"
    assert executor_name(None, {"MARIGOLD_EXECUTOR": "multiprocess"}) == "multiprocess"
    assert executor_name("celery", {"MARIGOLD_EXECUTOR": "multiprocess"}) == "celery"
    with pytest.raises(MarigoldError, match="valid: in_process, multiprocess, celery"):
        executor_name(None, {"MARIGOLD_EXECUTOR": "threads"})


def test_celery_queue_is_the_model_key_else_the_default_queue_with_the_prefix():
    prefix = {"MARIGOLD_CELERY_QUEUE_PREFIX": "ci42_"}
    assert celery_queue({"worker_model"}, prefix) == "ci42_worker_model"
    assert celery_queue(set(), prefix) == "ci42_dagster"
    assert celery_queue(set(), {}) == "dagster"


def test_default_job_runs_in_process_and_multiprocess_stays_selectable(monkeypatch):
    monkeypatch.delenv("MARIGOLD_EXECUTOR", raising=False)
    job = build_defs(TEMPLATES).resolve_job_def("contract_review")
    assert job.executor_def.name == "in_process_by_default"
    plan_config = {"execution": {"config": {"multiprocess": {"max_concurrent": 2}}}}
    assert "multiprocess" in str(validate_run_config(job, plan_config)["execution"])


def test_celery_jobs_route_model_steps_to_their_model_queue(monkeypatch):
    monkeypatch.setenv("MARIGOLD_EXECUTOR", "celery")
    monkeypatch.setenv("MARIGOLD_CELERY_QUEUE_PREFIX", "ci42_")
    job = build_defs(TEMPLATES).resolve_job_def("contract_review")
    assert job.executor_def.name == "marigold_celery"
    queues = {node.name: node.tags[CELERY_QUEUE_TAG] for node in job.graph.nodes}
    assert queues["triage"] == "ci42_worker_model"
    assert queues["deep_review__plan"] == "ci42_planner_model"
    assert queues["load"] == "ci42_dagster"
    assert queues["triage__split"] == "ci42_dagster"


def test_celery_steps_are_acknowledged_when_done_and_workers_share_the_config():
    from marigold_dagster.jobs.executors import celery_config

    config = celery_config({"MARIGOLD_CELERY_BROKER": "pyamqp://guest@broker//"})
    assert config["broker"] == "pyamqp://guest@broker//"
    assert config["backend"] == "rpc://"
    assert config["config_source"] == {
        "task_acks_late": True,
        "task_reject_on_worker_lost": False,
    }


def test_a_resumed_celery_run_keeps_its_executor_and_others_resume_in_process():
    from marigold_dagster.jobs.executors import CELERY_EXECUTOR
    from marigold_dagster.runs.resume import IN_PROCESS, reexecution_run_config

    parent = {"ops": {"load": {}}, "execution": {"config": {"multiprocess": {}}}}
    assert reexecution_run_config(parent, CELERY_EXECUTOR) == {"ops": {"load": {}}}
    assert reexecution_run_config(parent, "in_process_by_default")["execution"] == IN_PROCESS

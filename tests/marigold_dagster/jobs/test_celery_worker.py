"""`marigold worker`: the dagster-celery command line and config it starts a worker with."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from marigold_dagster.errors import MarigoldError
from marigold_dagster.jobs.celery_worker import (
    worker_argv,
    worker_command,
    worker_config_yaml,
    worker_queues,
    write_worker_config,
)
from marigold_dagster.jobs.executors import celery_config

TEMPLATES = Path(__file__).parents[3] / "templates"


def test_queues_are_the_default_then_one_per_model_key_with_the_prefix():
    keys = ["worker_model", "planner_model", "worker_model"]
    assert worker_queues(keys, environ={}) == ["dagster", "planner_model", "worker_model"]
    prefixed = worker_queues(keys, environ={"MARIGOLD_CELERY_QUEUE_PREFIX": "ci_"})
    assert prefixed == ["ci_dagster", "ci_planner_model", "ci_worker_model"]
    chosen = worker_queues(keys, ["worker_model", " ", "worker_model"], environ={})
    assert chosen == ["worker_model"]


def test_argv_gives_every_queue_in_one_q_and_celery_options_after_the_separator():
    argv = worker_argv(
        ["a", "b"], Path("/h/w.yaml"), name="w1", concurrency=2, extra=["-l", "INFO"]
    )
    assert Path(argv[0]).name == "dagster-celery"
    assert argv[1:] == [
        *("worker", "start", "-A", "dagster_celery.app", "-y", "/h/w.yaml", "-n", "w1"),
        *("-q", "a,b", "--", "--concurrency", "2", "-l", "INFO"),
    ]
    assert "--" not in worker_argv(["a"], Path("w.yaml"))
    with pytest.raises(MarigoldError, match="at most 4 queues"):
        worker_argv(list("abcde"), Path("w.yaml"))


def test_config_is_the_executors_celery_config(tmp_path: Path):
    environ = {"MARIGOLD_CELERY_BROKER": "pyamqp://guest@broker:5672//"}
    written = write_worker_config(tmp_path, worker_config_yaml(environ))
    config = yaml.safe_load(written.read_text())["execution"]["config"]
    assert config == celery_config(environ)
    assert config["broker"] == "pyamqp://guest@broker:5672//"
    assert config["config_source"]["task_acks_late"] is True
    assert written.parent.parent == tmp_path


def test_dry_run_prints_the_command_from_the_templates_and_starts_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("MARIGOLD_CELERY_QUEUE_PREFIX", "ci_")
    result = CliRunner().invoke(
        worker_command,
        ["--templates-dir", str(TEMPLATES), "--dry-run", "--", "--loglevel", "INFO"],
    )
    assert result.exit_code == 0, result.output
    command = result.output.splitlines()[0]
    assert "-q ci_dagster,ci_planner_model,ci_worker_model" in command
    assert command.endswith("-- --loglevel INFO")
    assert f"-y {tmp_path}/marigold/celery_worker.yaml" in command
    assert not (tmp_path / "marigold").exists()


def test_a_worker_needs_the_deployment_instance(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    result = CliRunner().invoke(worker_command, ["-q", "dagster"])
    assert result.exit_code == 1
    assert "DAGSTER_HOME is not set" in result.output

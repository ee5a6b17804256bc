"""A Celery worker SIGKILLed inside a chunk loses no row and repeats none, on PostgreSQL.

Two `marigold worker` processes on the machine's RabbitMQ run a batch job (8 chunks, each taking
about a second) orchestrated by this process (see `harness/crash_trial.py`, `run_celery_trial`):

1. a whole worker is killed inside a chunk: its task was not acknowledged, the broker gives it
   to the other worker, and the run completes by itself;
2. then only the process running the surviving worker's step is killed inside a chunk: the step
   fails, the run fails, and re-execution from failure completes it.

Each time every input row is in the merged table (or its dead letters) exactly once, and the
table equals the one the same job gives in process.
"""

from __future__ import annotations

import socket
from functools import partial
from pathlib import Path

import pytest
from dagster import DagsterInstance

from harness import crash_trial
from harness.celery_workers import celery_env, celery_workers, kill_on, unique_prefix

ROWS, SIZE, SECONDS_PER_ROW = 96, 12, 0.08


def _broker_reachable() -> None:
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=5).close()
    except OSError as error:
        pytest.fail(f"RabbitMQ is not reachable at 127.0.0.1:5672: {error}")


@pytest.mark.slow
def test_a_worker_killed_inside_a_chunk_loses_and_repeats_no_row(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    _broker_reachable()
    home = tmp_path / "home"
    crash_trial.write_instance(home, postgres_url)
    template = tmp_path / "crash_batch.yaml"
    template.write_text(crash_trial.crash_template(ROWS, SIZE, SECONDS_PER_ROW))
    prefix = unique_prefix()
    env = celery_env(home, prefix)
    for name in ("DAGSTER_HOME", "MARIGOLD_EXECUTOR", "MARIGOLD_CELERY_BROKER"):
        monkeypatch.setenv(name, env[name])
    monkeypatch.setenv("MARIGOLD_CELERY_QUEUE_PREFIX", prefix)

    results = []
    with DagsterInstance.from_config(str(home)) as instance:
        with celery_workers(home, prefix, ["dagster"], count=2) as workers:
            for kill_at in crash_trial.CELERY_KILLS:
                result = crash_trial.run_celery_trial(
                    instance,
                    home,
                    str(template),
                    ROWS,
                    kill_at=kill_at,
                    kill=partial(kill_on, workers, kill_at),
                    jitter_s=0.2,
                    trial=f"{prefix}{kill_at}",
                )
                results.append(result)
                logs = "\n".join(w.tail() for w in workers)
                assert (result.rows_lost, result.rows_duplicated) == (0, 0), f"{result}\n{logs}"
                assert result.rows_out == ROWS, result
            finals = [instance.get_run_by_id(r.runs[-1]) for r in results]
            assert workers[0].process.poll() is not None or workers[1].process.poll() is not None
        monkeypatch.delenv("MARIGOLD_EXECUTOR")
        local = crash_trial.crash_job(str(template)).execute_in_process(instance=instance)
        assert local.success
        in_process = crash_trial.merged_rows(instance, local.dagster_run)
        for final in finals:
            assert final is not None
            assert crash_trial.merged_rows(instance, final) == in_process

    redelivered, resumed = results
    assert redelivered.landed == "redelivered", redelivered
    assert len(redelivered.runs) == 1
    assert resumed.landed == "resumed", resumed
    killed_step = resumed.kill_at.partition(":")[2]
    assert killed_step in resumed.reexecuted_steps
    assert "work__split" not in resumed.reexecuted_steps, "a finished split is not re-run"

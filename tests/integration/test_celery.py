"""Template jobs on Celery workers over the machine's RabbitMQ, with PostgreSQL storage.

Two `dagster-celery` workers run in processes of their own, on queues unique to this test run;
a batch template (20 chunks) and the planning flagship run with the `celery` executor, and must
give the same results as the same jobs run in process.
"""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from dagster import DagsterEventType, DagsterInstance, build_reconstructable_job, execute_job

from harness.celery_workers import ROOT, celery_env, celery_workers, unique_prefix
from marigold_dagster.artifacts import artifacts_dir
from marigold_dagster.jobs.definitions import build_defs
from marigold_dagster.keys import WORKER_KEY

BATCH = """\
name: celery_batch
version: 1
inputs:
  contracts: {kind: table, default: data/contracts.csv}
models: {worker: worker_model}
budget: {max_steps: 50, max_tokens: 1000000, max_cost_usd: 5.0, max_fanout: 64}
steps:
  - name: load
    uses: acquire.read_table
    with: {input: contracts}
  - name: triage
    kind: batch
    depends_on: [load]
    batch: {size: 12, failure_strategy: isolate}
    uses: classify_records
    with: {field: text, labels: [low, medium, high], output_field: risk}
"""

RESULTS = {
    "celery_batch": "triage__merge.parquet",
    "contract_review": "tables/contract_review_report.parquet",
}


def _broker_reachable() -> None:
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=5).close()
    except OSError as error:
        pytest.fail(f"RabbitMQ is not reachable at 127.0.0.1:5672: {error}")


def _workers_of(instance: DagsterInstance, run_id: str, prefix: str) -> dict[str, str]:
    """Step key -> `host:pid` recorded in its output metadata."""
    seen = {}
    for record in instance.get_records_for_run(
        run_id, of_type=DagsterEventType.STEP_OUTPUT
    ).records:
        entry = record.event_log_entry
        if not (entry.step_key or "").startswith(prefix):
            continue
        metadata = entry.get_dagster_event().step_output_data.metadata
        if WORKER_KEY in metadata:
            seen[entry.step_key] = metadata[WORKER_KEY].value
    return seen


def _result(instance: DagsterInstance, run_id: str, template: str) -> list[dict]:
    path = artifacts_dir(instance.storage_directory(), run_id) / RESULTS[template]
    return pq.read_table(path).to_pylist()


@pytest.mark.slow
def test_two_celery_workers_run_batch_and_planning_templates(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    _broker_reachable()
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(
        f"storage:\n  postgres:\n    postgres_url: {postgres_url}\n"
        "telemetry:\n  enabled: false\npython_logs:\n  python_log_level: INFO\n"
    )
    templates = tmp_path / "templates"
    shutil.copytree(ROOT / "templates" / "data", templates / "data")
    shutil.copy(ROOT / "templates" / "contract_review.yaml", templates)
    (templates / "celery_batch.yaml").write_text(BATCH)
    prefix = unique_prefix()
    env = celery_env(home, prefix)
    for name in ("DAGSTER_HOME", "MARIGOLD_EXECUTOR", "MARIGOLD_CELERY_BROKER"):
        monkeypatch.setenv(name, env[name])
    monkeypatch.setenv("MARIGOLD_CELERY_QUEUE_PREFIX", prefix)
    monkeypatch.delenv("MARIGOLD_SGLANG_URL", raising=False)

    queues = ["dagster", "worker_model", "planner_model"]
    celery_results, pids = {}, {}
    with DagsterInstance.from_config(str(home)) as instance:
        with celery_workers(home, prefix, queues, count=2) as workers:
            for template in RESULTS:
                job = build_reconstructable_job(
                    "tests.support.reexecution_job",
                    "template_job",
                    reconstructable_args=(str(templates), template),
                )
                with execute_job(job, instance) as result:
                    failure = "\n".join(w.tail() for w in workers)
                    assert result.success, f"{template} failed on Celery:\n{failure}"
                    celery_results[template] = _result(instance, result.run_id, template)
                    pids[template] = _workers_of(instance, result.run_id, "")
        monkeypatch.delenv("MARIGOLD_EXECUTOR")
        defs = build_defs(templates)
        for template in RESULTS:
            job_def = defs.resolve_job_def(template)
            assert job_def.executor_def.name == "in_process_by_default"
            local = job_def.execute_in_process(instance=instance)
            assert local.success
            assert celery_results[template] == _result(instance, local.run_id, template)

    chunk_workers = {v for k, v in pids["celery_batch"].items() if k.startswith("triage[")}
    assert len([k for k in pids["celery_batch"] if k.startswith("triage[")]) == 20
    assert len(chunk_workers) == 2, f"chunks ran on {chunk_workers}, not on both workers"
    assert len(celery_results["celery_batch"]) == 240

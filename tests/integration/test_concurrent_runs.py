"""Eight concurrent runs of the flagship batch template through a real webserver and daemon.

Runs are submitted at once through GraphQL; the queue documented in dagster.yaml must start no
more runs of one template at a time than its tag limit allows, the `worker_model` pool must
bound the model-bound steps across runs, and every run must write the same report a run alone
in this process writes.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pyarrow.parquet as pq
import pytest
from dagster import DagsterEventType, DagsterInstance

from harness.deployment import (
    ROOT,
    DagsterDeployment,
    documented_run_queue_block,
)
from marigold_dagster.artifacts import artifacts_dir
from marigold_dagster.jobs.definitions import build_defs

JOB, REPORT, POOL = "contract_review", "contract_review_report", "worker_model"
RUNS = 8
# One process per run, not per step: the multiprocess executor's per-step start-up (seconds on
# a 2-core machine) would dominate; queue and pool limits apply to both executors alike.
IN_PROCESS = {"execution": {"config": {"in_process": {}}}}
POOL_LIMIT = 1  # below the documented default, so the pool, not the queue, is what bounds it


def template_run_limit() -> int:
    runs = documented_run_queue_block()["concurrency"]["runs"]
    per_template = [
        limit["limit"]
        for limit in runs.get("tag_concurrency_limits", [])
        if limit["key"] == "marigold/template"
    ]
    return min([runs["max_concurrent_runs"], *per_template])


class SlotWatch:
    """Samples how many of the pool's slots are claimed, in a thread, while the block runs."""

    def __init__(self, deployment: DagsterDeployment, every_s: float = 0.05):
        self.deployment, self.every_s = deployment, every_s
        self.most = self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        with self.deployment.instance() as instance:
            while not self._stop.is_set():
                info = instance.event_log_storage.get_concurrency_info(POOL)
                self.most = max(self.most, info.active_slot_count)
                self.samples += 1
                self._stop.wait(self.every_s)

    def __enter__(self) -> SlotWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def max_overlap(intervals: Iterable[tuple[float, float]]) -> int:
    """The most intervals open at one instant (an interval ending as another starts: not both)."""
    edges = sorted(
        [(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals],
        key=lambda edge: (edge[0], edge[1]),
    )
    open_now = most = 0
    for _, delta in edges:
        open_now += delta
        most = max(most, open_now)
    return most


def reference_report() -> pd.DataFrame:
    """The flagship's report from a run alone, in this process, on an ephemeral instance."""
    job = build_defs(ROOT / "templates").resolve_job_def(JOB)
    with tempfile.TemporaryDirectory() as folder:
        with DagsterInstance.ephemeral(tempdir=folder) as instance:
            result = job.execute_in_process(instance=instance)
            assert result.success, "the flagship fails when run alone in process"
            path = artifacts_dir(instance.storage_directory(), result.run_id)
            return pq.read_table(path / "tables" / f"{REPORT}.parquet").to_pandas()


def pool_step_keys(instance: DagsterInstance, run_ids: list[str]) -> dict[str, set[str]]:
    """Per run, the keys of the steps whose op is in the `worker_model` pool."""
    job = build_defs(ROOT / "templates").resolve_job_def(JOB)
    pooled = {node.name for node in job.nodes if node.definition.pool == POOL}
    assert pooled, f"no op of {JOB} is in pool {POOL}"
    keys: dict[str, set[str]] = {}
    for run_id in run_ids:
        starts = instance.all_logs(run_id, of_type=DagsterEventType.STEP_START)
        keys[run_id] = {e.step_key for e in starts if e.step_key.split("[")[0] in pooled}
    return keys


@pytest.mark.integration
@pytest.mark.slow
def test_eight_concurrent_runs_respect_queue_and_pool(dagster_deployment: DagsterDeployment):
    deployment = dagster_deployment
    expected = reference_report()
    deployment.dagster("instance", "concurrency", "set", POOL, str(POOL_LIMIT))
    slots = SlotWatch(deployment)
    try:
        with slots, ThreadPoolExecutor(RUNS) as pool:
            run_ids = list(pool.map(lambda _: deployment.launch_run(JOB, IN_PROCESS), range(RUNS)))
            statuses = deployment.wait_for_runs(run_ids, timeout_s=420)
    finally:
        with deployment.instance() as instance:
            instance.event_log_storage.delete_concurrency_limit(POOL)

    failed = [run_id for run_id, status in statuses.items() if status != "SUCCESS"]
    assert not failed, (
        f"{len(failed)} of {RUNS} runs did not succeed: {statuses}\n"
        + "\n".join(deployment.describe_run(run_id) for run_id in failed)
        + f"\n{deployment.logs_tail()}"
    )

    for run_id in run_ids:
        path = deployment.report_path(run_id, REPORT)
        assert path.is_file(), f"run {run_id} wrote no report at {path}"
        pd.testing.assert_frame_equal(pq.read_table(path).to_pandas(), expected)

    with deployment.instance() as instance:
        records = {r.dagster_run.run_id: r for r in instance.get_run_records()}
        for run_id in run_ids:
            types = {e.dagster_event_type for e in instance.all_logs(run_id)}
            assert {DagsterEventType.RUN_ENQUEUED, DagsterEventType.RUN_STARTING} <= types, (
                f"run {run_id} did not go through the run queue: {sorted(map(str, types))}"
            )
        runs = [(records[r].start_time, records[r].end_time) for r in run_ids]
        limit = template_run_limit()
        most_runs = max_overlap(runs)
        assert most_runs == limit, (
            f"expected the queue to run exactly {limit} runs of {JOB} at once (its tag limit), "
            f"saw at most {most_runs}; (start, end) per run: {sorted(runs)}"
        )

        keys = pool_step_keys(instance, run_ids)
        steps = sum(len(keys[run_id]) for run_id in run_ids)
        assert steps >= RUNS * 6, f"expected >= 6 pooled steps per run, saw {steps}"
    # The pool's own slot accounting, sampled while the runs ran. (Step event timestamps are no
    # measure of it: a slot is freed as a step ends, before its STEP_SUCCESS event is written.)
    assert slots.samples > 0 and slots.most >= 1, "the pool was never seen in use"
    assert slots.most <= POOL_LIMIT, (
        f"pool {POOL} allows {POOL_LIMIT} step(s) at once, saw {slots.most} slots claimed"
    )

"""Kill a batch run with SIGKILL, mark it failed, re-execute it from failure, and check the rows.

A trial runs the job of `crash_template(...)` in a child process (forked from a fork server) on
a persistent instance in a DAGSTER_HOME (PostgreSQL or SQLite, see `write_instance`), SIGKILLs
the child at a chosen point, and recovers in this process:

- no run recorded (killed before `execute_job` created it): run the job from the start;
- the run finished (killed after it succeeded): nothing to recover;
- every step succeeded but the run was killed before it recorded success: mark it failed, and
  nothing is left to re-execute (`runs.resume.steps_left` is empty);
- the run is left NOT_STARTED, STARTING or STARTED: nothing will ever finish it, because a
  SIGKILLed process writes no RUN_FAILURE and, with `execute_job` in process, there is no run
  launcher or daemon whose run monitoring could notice the worker is gone. This process has
  reaped the child (its exit code says SIGKILL), so the run provably has no live worker: report it
  failed with `instance.report_run_failed` (what run monitoring does when a worker health check
  fails), then `execute_job(..., reexecution_options=ReexecutionOptions.from_failure(...))`.

Re-execution loads the outputs of every step that succeeded from the parent run's files (a
`FilesystemIOManager`, under the instance's storage folder), so only the interrupted work runs
again. The batch's merged table is then read and every input row is checked to appear exactly
once, by key.

A Celery trial (`run_celery_trial`) runs the same job with the `celery` executor: this process
orchestrates, Celery workers run the steps. A watcher SIGKILLs one worker while it is inside a
chunk (a chunk step that started, no success yet, on the worker its Celery engine event names):

- the whole worker (`kill_at="worker_mid_chunk"`, a machine lost): the step's task was not yet
  acknowledged (`task_acks_late`), so the broker hands it to the other worker and the run
  completes by itself;
- only the process running the step (`kill_at="pool_mid_chunk"`, the worker lives): the task
  fails with Celery's WorkerLostError, the run fails, and it is re-executed from failure.

The bench (`bench/bench_crash_resume.py`) runs the same trials.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from dagster import (
    DagsterEventType,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    FilesystemIOManager,
    JobDefinition,
    ReexecutionOptions,
    RunsFilter,
    build_reconstructable_job,
    execute_job,
)
from pydantic import BaseModel

from grammar_ops import Kind, application_capability, standard_catalog
from marigold_dagster.jobs.compiler import compile_frame
from marigold_dagster.runs.resume import steps_left
from marigold_dagster.template.loader import load_template

TRIAL_TAG = "marigold/crash_trial"
IN_PROCESS = {"execution": {"config": {"in_process": {}}}}
MODULE = "harness.crash_trial"
MERGE_STEP = "work__merge"
DEAD_LETTERS = "work__dead_letters.parquet"
CELERY_WORKER_KEY = "Celery worker"
"""Where dagster-celery's engine event at the start of a step's task names the worker."""
POLL_S = 0.05


class SlowMarkConfig(BaseModel):
    seconds_per_row: float = 0.0


@application_capability(
    "t.slow_mark",
    accepts={Kind.TABLE, Kind.RECORDS},
    produces=Kind.RECORDS,
    summary="mark each row as processed, taking a set time per row",
    config=SlowMarkConfig,
)
def slow_mark(value: Any, config: SlowMarkConfig, ctx: Any) -> list[dict[str, Any]]:
    rows = value.to_pylist() if hasattr(value, "to_pylist") else list(value)
    time.sleep(config.seconds_per_row * len(rows))
    return [dict(row, processed_by=ctx.step) for row in rows]


class KeyedRowsConfig(BaseModel):
    n: int


@application_capability(
    "t.keyed_rows",
    accepts=set(Kind),
    produces=Kind.RECORDS,
    summary="n rows, each with a unique key",
    config=KeyedRowsConfig,
)
def keyed_rows(value: Any, config: KeyedRowsConfig, ctx: Any) -> list[dict[str, Any]]:
    return [{"key": f"row-{i:05d}", "n": i} for i in range(config.n)]


CAPABILITIES = [slow_mark, keyed_rows]


def crash_template(rows: int, size: int, seconds_per_row: float, strategy: str = "isolate") -> str:
    """A batch template: `rows` keyed rows, chunks of `size`, each row taking a set time."""
    return f"""name: crash_batch
version: 1
budget: {{max_steps: 50, max_tokens: 1000, max_cost_usd: 1, max_fanout: 64}}
steps:
  - {{name: load, uses: t.keyed_rows, with: {{n: {rows}}}}}
  - name: work
    kind: batch
    depends_on: [load]
    batch: {{size: {size}, failure_strategy: {strategy}}}
    uses: t.slow_mark
    with: {{seconds_per_row: {seconds_per_row}}}
  - {{name: done, kind: converge, depends_on: [work]}}
"""


def crash_job(template_path: str) -> JobDefinition:
    """The job of the template at `template_path` (a reconstructable target for `execute_job`)."""
    catalog = standard_catalog().extended(CAPABILITIES)
    frame = load_template(Path(template_path), catalog)
    # Re-execution loads the parent's outputs: they must be files (as definitions.py binds).
    return compile_frame(frame, resource_defs={"io_manager": FilesystemIOManager()})


def reconstructable(template_path: str) -> Any:
    return build_reconstructable_job(MODULE, "crash_job", reconstructable_args=(template_path,))


def write_instance(home: Path, postgres_url: str | None = None) -> None:
    """A DAGSTER_HOME with a persistent instance: PostgreSQL when a URL is given, else SQLite."""
    home.mkdir(parents=True, exist_ok=True)
    storage = f"storage:\n  postgres:\n    postgres_url: {postgres_url}\n" if postgres_url else ""
    (home / "dagster.yaml").write_text(f"{storage}telemetry:\n  enabled: false\n")


@dataclass
class TrialResult:
    """What one kill-and-resume trial saw."""

    kill_at: str
    killed_after_s: float
    landed: str  # no_run | not_started | mid_run | after_last_step | after_success
    steps_done_at_kill: int
    rows_in: int
    rows_out: int
    rows_lost: int
    rows_duplicated: int
    recovery_s: float
    runs: list[str] = field(default_factory=list)
    reexecuted_steps: list[str] = field(default_factory=list)


_FORKSERVER = multiprocessing.get_context("forkserver")
_FORKSERVER.set_forkserver_preload([MODULE])


def run_child(
    home: Path,
    args: tuple[str, ...],
    trial: str,
    target: tuple[str, str] = (MODULE, "crash_job"),
) -> BaseProcess:
    """Start a job in a child process: `execute_job` in process on the instance in `home`.

    The job is `target` (module, function) called with `args`, as `build_reconstructable_job`
    takes it; the run is tagged with `trial`.

    Children fork from a fork server that has imported Dagster and this project once, so a
    child starts in milliseconds instead of the seconds a fresh interpreter takes.
    """
    child = _FORKSERVER.Process(
        target=_child_main, args=(str(home), target, args, trial), daemon=True
    )
    child.start()
    return child


def find_run(instance: DagsterInstance, trial: str) -> DagsterRun | None:
    runs = instance.get_runs(filters=RunsFilter(tags={TRIAL_TAG: trial}), limit=1)
    return runs[0] if runs else None


def successful_steps(instance: DagsterInstance, run_id: str) -> list[str]:
    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.STEP_SUCCESS).records
    return [r.event_log_entry.step_key or "" for r in records]


def started_steps(instance: DagsterInstance, run_id: str) -> list[str]:
    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.STEP_START).records
    return [r.event_log_entry.step_key or "" for r in records]


def recover(
    instance: DagsterInstance, template_path: str, trial: str
) -> tuple[str, int, DagsterRun]:
    """Bring the trial's run to success; return where the kill landed and the final run."""
    job = reconstructable(template_path)
    run = find_run(instance, trial)
    if run is None:
        with execute_job(job, instance, run_config=IN_PROCESS, tags={TRIAL_TAG: trial}) as result:
            assert result.success, "the fresh run after a kill before any run failed"
            final = instance.get_run_by_id(result.run_id)
        assert final is not None
        return "no_run", 0, final
    done = len(successful_steps(instance, run.run_id))
    if run.status is DagsterRunStatus.SUCCESS:
        return "after_success", done, run
    landed = "mid_run" if run.status is DagsterRunStatus.STARTED else "not_started"
    if not run.is_finished:
        instance.report_run_failed(
            run, "the run worker was killed (SIGKILL); marked failed to re-execute from failure"
        )
    if not steps_left(instance, run.run_id):
        # Killed after its last step, before RUN_SUCCESS: the work is done, in this run.
        return "after_last_step", done, run
    options = ReexecutionOptions.from_failure(run.run_id, instance)
    with execute_job(job, instance, run_config=IN_PROCESS, reexecution_options=options) as result:
        assert result.success, "the re-execution from failure failed"
        final = instance.get_run_by_id(result.run_id)
    assert final is not None
    return landed, done, final


def merge_output(instance: DagsterInstance, final: DagsterRun) -> Path:
    """The batch's merged table, from the run (or ancestor) that ran the merge."""
    run: DagsterRun | None = final
    while run is not None:
        for record in instance.get_records_for_run(
            run.run_id, of_type=DagsterEventType.STEP_OUTPUT
        ).records:
            entry = record.event_log_entry
            if entry.step_key == MERGE_STEP:
                data = entry.get_dagster_event().step_output_data
                return Path(data.metadata["marigold/output_path"].value)
        run = instance.get_run_by_id(run.parent_run_id) if run.parent_run_id else None
    raise AssertionError(f"no run in the chain of {final.run_id} ran {MERGE_STEP}")


def merged_keys(instance: DagsterInstance, final: DagsterRun) -> list[str]:
    """The keys of the batch's merged table and of its dead letters (rows set aside)."""
    path = merge_output(instance, final)
    keys = pq.read_table(path, columns=["key"])["key"].to_pylist()
    if (path.parent / DEAD_LETTERS).exists():
        dead = pq.read_table(path.parent / DEAD_LETTERS)
        keys += dead["key"].to_pylist() if "key" in dead.column_names else []
    return [str(k) for k in keys]


def merged_rows(instance: DagsterInstance, final: DagsterRun) -> list[dict[str, Any]]:
    """The rows of the batch's merged table."""
    return pq.read_table(merge_output(instance, final)).to_pylist()


def count_rows(keys: list[str], rows: int) -> tuple[int, int]:
    """Rows lost and rows duplicated (or unknown) among `keys`, of `rows` keyed rows."""
    counts = Counter(keys)
    expected = {f"row-{i:05d}" for i in range(rows)}
    lost = len(expected - set(counts))
    return lost, sum(n - 1 for n in counts.values() if n > 1) + len(set(counts) - expected)


KILL_POINTS = (
    "at_spawn",
    "run_created",
    "load_done",
    "split_started",
    "split_done",
    "first_chunk_started",
    "half_chunks_done",
    "merge_started",
    "merge_done",
    "never",
)
"""Where a trial kills the child, as progress the run has recorded (then a random extra delay).

Wall-clock delays alone cluster on a loaded machine (interpreter start-up dominates), so each
kill is anchored on an event in the run's log and then delayed by a random fraction of a second:
that lands it before any step, inside a step, or between steps, across the whole run."""


def step_events(instance: DagsterInstance, run_id: str) -> tuple[set[str], set[str]]:
    """The step keys that started, and those that succeeded, in run `run_id`."""
    records = instance.get_records_for_run(
        run_id, of_type={DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS}
    ).records
    started, done = set(), set()
    for record in records:
        entry = record.event_log_entry
        kind = entry.dagster_event_type
        (started if kind is DagsterEventType.STEP_START else done).add(entry.step_key or "")
    return started, done


def _reached(instance: DagsterInstance, run_id: str | None, point: str, chunks: int) -> bool:
    if point == "at_spawn":
        return True
    if run_id is None:
        return False
    if point == "run_created":
        return True
    started, done = step_events(instance, run_id)
    chunk_done = sum(1 for key in done if key.startswith("work["))
    return {
        "load_done": "load" in done,
        "split_started": "work__split" in started,
        "split_done": "work__split" in done,
        "first_chunk_started": any(key.startswith("work[") for key in started),
        "half_chunks_done": chunk_done >= max(1, chunks // 2),
        "merge_started": MERGE_STEP in started,
        "merge_done": MERGE_STEP in done,
    }.get(point, False)


def kill_when(
    child: BaseProcess,
    reached: Callable[[str | None], bool],
    instance: DagsterInstance,
    trial: str,
    jitter_s: float,
) -> None:
    """SIGKILL `child` once `reached(run_id)` holds, `jitter_s` later (unless it ended first)."""
    run_id = None
    while child.is_alive():
        if run_id is None and (run := find_run(instance, trial)) is not None:
            run_id = run.run_id
        if reached(run_id):
            break
        time.sleep(POLL_S)
    child.join(timeout=jitter_s)
    if child.is_alive():
        child.kill()  # SIGKILL: no handler runs, nothing is flushed or reported
    child.join()
    # -SIGKILL, or 0 when the run ended on its own just before the kill
    assert child.exitcode in (-signal.SIGKILL, 0), f"the child ended with {child.exitcode}"


def run_trial(
    instance: DagsterInstance,
    home: Path,
    template_path: str,
    rows: int,
    chunks: int,
    kill_at: str,
    jitter_s: float,
    trial: str,
) -> TrialResult:
    """Start the child, SIGKILL it at `kill_at` plus `jitter_s`, recover, count rows by key."""
    child = run_child(home, (template_path,), trial)
    spawned = time.perf_counter()
    kill_when(
        child, lambda run_id: _reached(instance, run_id, kill_at, chunks), instance, trial, jitter_s
    )
    killed_at = time.perf_counter()
    landed, done, final = recover(instance, template_path, trial)
    recovery_s = time.perf_counter() - killed_at
    return counted_trial(
        instance, final, rows, kill_at, killed_at - spawned, landed, done, recovery_s
    )


def counted_trial(
    instance: DagsterInstance,
    final: DagsterRun,
    rows: int,
    kill_at: str,
    killed_after_s: float,
    landed: str,
    done: int,
    recovery_s: float,
) -> TrialResult:
    """A trial's result: the rows of the batch that `final` (or its parent) merged, counted."""
    keys = merged_keys(instance, final)
    lost, duplicated = count_rows(keys, rows)
    return TrialResult(
        kill_at=kill_at,
        killed_after_s=round(killed_after_s, 3),
        landed=landed,
        steps_done_at_kill=done,
        rows_in=rows,
        rows_out=len(keys),
        rows_lost=lost,
        rows_duplicated=duplicated,
        recovery_s=round(recovery_s, 3),
        runs=[r for r in (final.parent_run_id, final.run_id) if r],
        reexecuted_steps=started_steps(instance, final.run_id) if final.parent_run_id else [],
    )


CELERY_KILLS = ("worker_mid_chunk", "pool_mid_chunk")
"""What a Celery trial kills: a whole worker, or only the process running its step."""


def chunk_in_flight(instance: DagsterInstance, run_id: str) -> tuple[str, str] | None:
    """A chunk step that started and has not succeeded, and the Celery worker running it."""
    records = instance.get_records_for_run(
        run_id,
        of_type={
            DagsterEventType.ENGINE_EVENT,
            DagsterEventType.STEP_START,
            DagsterEventType.STEP_SUCCESS,
        },
    ).records
    hosts: dict[str, str] = {}
    started, done = set(), set()
    for record in records:
        entry = record.event_log_entry
        key = entry.step_key or ""
        if not key.startswith("work["):
            continue
        kind = entry.dagster_event_type
        if kind is DagsterEventType.ENGINE_EVENT:
            metadata = entry.get_dagster_event().engine_event_data.metadata
            if CELERY_WORKER_KEY in metadata:
                hosts[key] = str(metadata[CELERY_WORKER_KEY].value)
        else:
            (started if kind is DagsterEventType.STEP_START else done).add(key)
    for key in sorted(started - done):
        if key in hosts:
            return key, hosts[key]
    return None


def _kill_inside_a_chunk(
    home: Path,
    trial: str,
    kill: Callable[[str], None],
    jitter_s: float,
    stop: threading.Event,
    killed: list[tuple[str, float, int]],
) -> None:
    """Wait for a chunk in flight on a worker, `jitter_s` more, then `kill(worker hostname)`."""
    with DagsterInstance.from_config(str(home)) as instance:
        while not stop.is_set():
            run = find_run(instance, trial)
            in_flight = chunk_in_flight(instance, run.run_id) if run else None
            if in_flight is not None:
                time.sleep(jitter_s)
                assert run is not None
                if chunk_in_flight(instance, run.run_id) == in_flight:
                    done = len(successful_steps(instance, run.run_id))
                    kill(in_flight[1])
                    killed.append((in_flight[0], time.perf_counter(), done))
                    return
            time.sleep(POLL_S)


def run_celery_trial(
    instance: DagsterInstance,
    home: Path,
    template_path: str,
    rows: int,
    kill_at: str,
    kill: Callable[[str], None],
    jitter_s: float,
    trial: str,
) -> TrialResult:
    """Run the job on Celery workers, kill one inside a chunk, finish the run, count the rows.

    `kill(hostname)` SIGKILLs the worker whose Celery node name is `hostname` (`name@host`),
    as `kill_at` says (see `CELERY_KILLS`); the caller owns the workers. The job's executor is
    the deployment's (`MARIGOLD_EXECUTOR=celery` here and in the workers).
    """
    job = reconstructable(template_path)
    stop, killed = threading.Event(), list[tuple[str, float, int]]()
    watcher = threading.Thread(
        target=_kill_inside_a_chunk, args=(home, trial, kill, jitter_s, stop, killed), daemon=True
    )
    started = time.perf_counter()
    watcher.start()
    try:
        with execute_job(job, instance, tags={TRIAL_TAG: trial}) as result:
            succeeded, run_id = result.success, result.run_id
    finally:
        stop.set()
        watcher.join()
    assert killed, f"trial {trial}: no chunk was seen in flight to kill"
    killed_step, killed_at, done = killed[0]
    run = instance.get_run_by_id(run_id)
    assert run is not None
    final, landed = run, "redelivered"
    if not succeeded:
        options = ReexecutionOptions.from_failure(run_id, instance)
        with execute_job(job, instance, reexecution_options=options) as result:
            assert result.success, "the re-execution from failure failed"
            final_run = instance.get_run_by_id(result.run_id)
        assert final_run is not None
        final, landed = final_run, "resumed"
    recovery_s = time.perf_counter() - killed_at
    return counted_trial(
        instance,
        final,
        rows,
        f"{kill_at}:{killed_step}",
        killed_at - started,
        landed,
        done,
        recovery_s,
    )


def uninterrupted_run(
    instance: DagsterInstance, template_path: str, run_config: dict[str, Any] | None = None
) -> float:
    """Seconds one uninterrupted run takes from this process (in it, unless `run_config` says
    otherwise: `{}` keeps the job's own executor)."""
    started = time.perf_counter()
    config = IN_PROCESS if run_config is None else run_config
    with execute_job(reconstructable(template_path), instance, run_config=config) as result:
        assert result.success
    return time.perf_counter() - started


def _child_main(home: str, target: tuple[str, str], args: tuple[str, ...], trial: str) -> None:
    os.environ["DAGSTER_HOME"] = home
    # The job module may live beside this one (tests/, bench/): keep the checkout importable
    # (at the end of sys.path: Dagster drops sys.path[0] while it imports the job module).
    root = str(Path(__file__).resolve().parents[1])
    if root not in sys.path[1:]:
        sys.path.append(root)
    with open(Path(home) / f"child-{trial}.log", "wb") as log:
        os.dup2(log.fileno(), 2)  # Dagster's console log goes to a file, not the test output
    job = build_reconstructable_job(target[0], target[1], reconstructable_args=args)
    with DagsterInstance.from_config(home) as instance:
        execute_job(job, instance, run_config=IN_PROCESS, tags={TRIAL_TAG: trial})

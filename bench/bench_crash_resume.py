"""Crash and resume: SIGKILL a batch run at a random point, re-execute it, count the rows.

Each trial runs a batch job (keyed rows, chunks, a step per chunk that takes a set time per
row) in a child process on a persistent instance in a temporary DAGSTER_HOME (SQLite, or
PostgreSQL with `--postgres-url`, as CI's kill trials use), kills it
with SIGKILL at a random point (a random progress anchor in the run's event log, then a random
delay), marks the dead run failed and re-executes it from failure in this process, then checks
the merged table by key. Prints JSON: rows lost and rows duplicated over all trials (both must
be 0), where the kills landed, and the time to recover (from the kill to the resumed run's
success, marking included) as a ratio of an uninterrupted run's time measured in this process.

With `--celery` (PostgreSQL needed) the job runs on two `marigold worker` processes on the
machine's RabbitMQ, started afresh for each trial, and each trial SIGKILLs one of them inside a
chunk: alternately the whole worker (the broker hands its step to the other) and only the process
running its step (the run fails and is re-executed from failure); see `run_celery_trial`.

    python bench/bench_crash_resume.py --trials 10
    python bench/bench_crash_resume.py --trials 10 \
        --postgres-url postgresql+psycopg2://postgres@127.0.0.1:5432/marigold_bench
    python bench/bench_crash_resume.py --celery --trials 4 --rows 96 --size 12 \
        --seconds-per-row 0.08 --postgres-url postgresql+psycopg2://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import uuid
from collections import Counter
from functools import partial
from pathlib import Path

# The trial lives with the tests that run it in CI; make the repository importable from here.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dagster import DagsterInstance  # noqa: E402

from harness import crash_trial as crash_resume  # noqa: E402
from harness.celery_workers import (  # noqa: E402
    celery_env,
    celery_workers,
    kill_on,
    unique_prefix,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10, help="kill-and-resume trials")
    parser.add_argument("--rows", type=int, default=60, help="rows in the batch")
    parser.add_argument("--size", type=int, default=10, help="rows per chunk")
    parser.add_argument("--seconds-per-row", type=float, default=0.01, help="work per row")
    parser.add_argument("--baseline-runs", type=int, default=3, help="uninterrupted runs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--postgres-url",
        default=None,
        help="keep run storage in this PostgreSQL database (a postgresql+psycopg2:// URL)",
    )
    parser.add_argument("--celery", action="store_true", help="steps on two Celery workers")
    args = parser.parse_args()
    if args.celery and not args.postgres_url:
        parser.error("--celery needs --postgres-url: the workers share the run storage")

    rng = random.Random(args.seed)
    # Trials are found by tag; a PostgreSQL database may hold runs of an earlier invocation.
    session = uuid.uuid4().hex[:8]
    chunks = -(-args.rows // args.size)
    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder) / "dagster_home"
        crash_resume.write_instance(home, args.postgres_url)
        template = Path(folder) / "crash_batch.yaml"
        template.write_text(crash_resume.crash_template(args.rows, args.size, args.seconds_per_row))
        if args.celery:
            trials, baseline = celery_trials(home, template, args, session)
            print(json.dumps(report(trials, baseline, args, chunks), indent=2))
            return
        with DagsterInstance.from_config(str(home)) as instance:
            baseline = statistics.median(
                crash_resume.uninterrupted_run(instance, str(template))
                for _ in range(args.baseline_runs)
            )
            trials = []
            for index in range(args.trials):
                point = rng.choice(crash_resume.KILL_POINTS)
                trials.append(
                    crash_resume.run_trial(
                        instance,
                        home,
                        str(template),
                        args.rows,
                        chunks,
                        kill_at=point,
                        jitter_s=rng.uniform(0.0, 0.5),
                        trial=f"bench-{session}-{index}",
                    )
                )
    print(json.dumps(report(trials, baseline, args, chunks), indent=2))


def celery_trials(
    home: Path, template: Path, args: argparse.Namespace, session: str
) -> tuple[list[crash_resume.TrialResult], float]:
    """Trials on two Celery workers each, and the seconds of an uninterrupted run on them."""
    prefix = unique_prefix()
    env = celery_env(home, prefix)
    for name in ("MARIGOLD_EXECUTOR", "MARIGOLD_CELERY_BROKER", "MARIGOLD_CELERY_QUEUE_PREFIX"):
        os.environ[name] = env[name]
    trials = []
    with DagsterInstance.from_config(str(home)) as instance:
        with celery_workers(home, prefix, ["dagster"], count=2):
            baseline = crash_resume.uninterrupted_run(instance, str(template), run_config={})
        for index in range(args.trials):
            kill_at = crash_resume.CELERY_KILLS[index % len(crash_resume.CELERY_KILLS)]
            with celery_workers(home, prefix, ["dagster"], count=2) as workers:
                trial = crash_resume.run_celery_trial(
                    instance,
                    home,
                    str(template),
                    args.rows,
                    kill_at=kill_at,
                    kill=partial(kill_on, workers, kill_at),
                    jitter_s=0.2,
                    trial=f"bench-{session}-celery-{index}",
                )
            trials.append(trial)
    return trials, baseline


def report(
    trials: list[crash_resume.TrialResult],
    baseline: float,
    args: argparse.Namespace,
    chunks: int,
) -> dict[str, object]:
    """The bench's JSON: rows lost and duplicated, landings, recovery against a clean run."""
    finished = {"after_success", "after_last_step"}  # nothing was left to re-execute
    recovered = [t.recovery_s / baseline for t in trials if t.landed not in finished]
    landings = sorted({t.landed for t in trials})
    rerun = [len(t.reexecuted_steps) for t in trials if t.reexecuted_steps]
    return {
        "executor": "celery" if args.celery else "in_process",
        "trials": len(trials),
        "rows_per_trial": args.rows,
        "chunks_per_trial": chunks,
        "rows_lost": sum(t.rows_lost for t in trials),
        "rows_duplicated": sum(t.rows_duplicated for t in trials),
        "kills_landed": dict(Counter(t.landed for t in trials)),
        "kill_anchors": dict(Counter(t.kill_at for t in trials)),
        "storage": "postgres" if args.postgres_url else "sqlite",
        "uninterrupted_run_s": round(baseline, 3),
        "recovery_ratio_median": round(statistics.median(recovered), 3) if recovered else None,
        "recovery_ratio_max": round(max(recovered), 3) if recovered else None,
        "recovery_ratio_by_landing": {
            landed: round(
                statistics.median(t.recovery_s / baseline for t in trials if t.landed == landed), 3
            )
            for landed in landings
        },
        "steps_rerun_median": statistics.median(rerun) if rerun else 0,
    }


if __name__ == "__main__":
    main()

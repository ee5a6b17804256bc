"""A template run launched as the Dagster UI launches it, against `marigold run`.

Starts dagster-webserver and dagster-daemon on a fresh PostgreSQL database (the harness of
`harness/deployment.py`: the project's workspace, the documented run queue), then runs the
flagship template `--runs` times each way, alternating:

1. through the webserver's GraphQL `launchRun` mutation, as the Launchpad does (the run waits in
   the queue, the daemon launches it in a new process), with the job's default executor, and
2. through `marigold run <template>` in a new process on the same instance.

It prints JSON: each way's median run time (the run's own start to end, from the instance) and
wall time (launch request, or command start, to the run's end), and the ratios UI / CLI of both.
Run from the repository root:

    .venv/bin/python bench/bench_launch.py --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg2  # noqa: E402

from harness.deployment import BIN, ROOT, DagsterDeployment  # noqa: E402

ADMIN = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "test"}


def ui_run(deployment: DagsterDeployment, template: str, executor: str | None) -> dict[str, float]:
    started = time.time()
    run_config = {"execution": {"config": {executor: {}}}} if executor else {}
    run_id = deployment.launch_run(template, run_config)
    status = deployment.wait_for_run(run_id, timeout_s=600)
    if status != "SUCCESS":
        raise SystemExit(deployment.describe_run(run_id))
    run = deployment.run_status(run_id)
    return {"run_s": run["endTime"] - run["startTime"], "wall_s": run["endTime"] - started}


def cli_run(deployment: DagsterDeployment, template: str) -> dict[str, float]:
    env = {**os.environ, "DAGSTER_HOME": str(deployment.home)}
    env.pop("MARIGOLD_SGLANG_URL", None)
    started = time.time()
    done = subprocess.run(
        [str(BIN / "marigold"), "run", template], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"marigold run failed:\n{done.stdout}\n{done.stderr}")
    with deployment.instance() as instance:
        record = instance.get_run_records(limit=1)[0]
    assert record.start_time is not None and record.end_time is not None
    return {
        "run_s": record.end_time - record.start_time,
        "wall_s": time.time() - started,
    }


def median(samples: list[dict[str, float]], key: str) -> float:
    return statistics.median(sample[key] for sample in samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--template", default="contract_review")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--ui-executor",
        choices=["in_process", "multiprocess"],
        default=None,
        help="run config for the UI launches (default: none, the job's default executor)",
    )
    args = parser.parse_args()
    database = f"marigold_bench_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(**ADMIN, connect_timeout=5)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{database}"')
    url = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{database}"
    results: dict[str, Any] = {
        "template": args.template,
        "runs": args.runs,
        "ui_executor": args.ui_executor or "job default",
    }
    try:
        with tempfile.TemporaryDirectory() as home:
            with DagsterDeployment.start(Path(home), url) as deployment:
                cli_run(deployment, args.template)  # warm caches (imports, PostgreSQL schema)
                ui: list[dict[str, float]] = []
                cli: list[dict[str, float]] = []
                for _ in range(args.runs):
                    ui.append(ui_run(deployment, args.template, args.ui_executor))
                    cli.append(cli_run(deployment, args.template))
        for name, samples in (("ui", ui), ("cli", cli)):
            results[name] = {
                "run_s": round(median(samples, "run_s"), 3),
                "wall_s": round(median(samples, "wall_s"), 3),
                "samples": samples,
            }
        results["run_time_ratio_ui_over_cli"] = round(median(ui, "run_s") / median(cli, "run_s"), 3)
        results["wall_time_ratio_ui_over_cli"] = round(
            median(ui, "wall_s") / median(cli, "wall_s"), 3
        )
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        admin.close()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

"""A batch template at 1,000 / 10,000 / 50,000 rows against the SGLang-compatible test server.

Starts the TEST DOUBLE (no model) in its own process with a stated capacity (`--concurrency`
prompts running at once, each taking `--latency-ms`), then for each row count, each in a fresh
process of its own (so peak RSS is that size's):

1. **template**: a `load -> classify (batch) -> count` template run as `marigold run` runs it
   (in process, persistent SQLite instance), the model resource bound exactly as jobs bind it
   (`marigold_dagster.jobs.model_binding.model_resources` with `MARIGOLD_SGLANG_URL` set);
2. **direct**: the same number of classification calls through that same resource's
   `complete_many` from one op: the baseline.

It prints JSON: per size rows/s, throughput / capacity, template / direct, peak RSS, event-log
rows and bytes per chunk, the template's extra seconds per chunk, and across sizes
time(50k) / time(10k) and RSS(50k) / RSS(10k). Without `--chunk-rows` the template leaves
`batch.size` to its default (`DEFAULT_BATCH_ROWS`); with it, each value is compared.
Run from the repository root:

    .venv/bin/python bench/bench_scale.py --rows 1000 10000 50000
    .venv/bin/python bench/bench_scale.py --rows 50000 --chunk-rows 2000 5000 10000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODEL = "sglang-test-double"
LABELS = ("low", "medium", "high")
TEMPLATE = """\
name: scale
version: 1
inputs:
  rows: {{kind: table, default: rows.parquet}}
models: {{worker: worker_model}}
budget: {{max_steps: 100, max_tokens: 1000000000, max_cost_usd: 1000.0, max_fanout: 1000}}
steps:
  - name: load
    uses: acquire.read_table
    with: {{input: rows}}
  - name: classify
    kind: batch
    depends_on: [load]
    batch: {{{size}failure_strategy: continue}}
    uses: classify_records
    with: {{field: text, labels: [low, medium, high], output_field: risk}}
  - name: count
    depends_on: [classify]
    uses: aggregate.count
    with: {{by: [risk]}}
"""


def text(i: int) -> str:
    return f"Clause {i}: the supplier's liability is capped at {i * 37 % 1000} EUR."


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_template(rows: int, chunk_rows: int | None, work: Path) -> dict[str, Any]:
    """Run the template over `rows` rows in this process; its timing, RSS and event-log size."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from dagster import DagsterInstance
    from dagster._serdes import serialize_value

    from marigold_dagster.runs.local_run import run_locally

    templates = work / "templates"
    templates.mkdir()
    size = "" if chunk_rows is None else f"size: {chunk_rows}, "
    (templates / "scale.yaml").write_text(TEMPLATE.format(size=size))
    pq.write_table(pa.table({"text": [text(i) for i in range(rows)]}), templates / "rows.parquet")
    home = work / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(
        f"storage:\n  sqlite:\n    base_dir: {home / 'storage'}\n"
        f"local_artifact_storage:\n  module: dagster._core.storage.root\n"
        f"  class: LocalArtifactStorage\n  config:\n    base_dir: {home}\n"
        "telemetry:\n  enabled: false\n"
        "python_logs:\n  python_log_level: INFO\n"  # as the project's dagster.yaml
    )
    os.environ["DAGSTER_HOME"] = str(home)
    started = time.perf_counter()
    run = run_locally("scale", templates, project_dir=home)
    elapsed = time.perf_counter() - started
    if not run.success:
        raise SystemExit(f"run failed: {run.summary}")
    with DagsterInstance.get() as instance:
        entries = instance.all_logs(run.summary.run_id)
        record = instance.get_run_records(limit=1)[0]
    assert record.start_time is not None and record.end_time is not None
    chunk_entries = [e for e in entries if (e.step_key or "").startswith("classify[")]
    chunks = len({e.step_key for e in chunk_entries}) or 1
    return {
        "elapsed_s": record.end_time - record.start_time,
        "elapsed_with_definitions_load_s": elapsed,
        "chunks": chunks,
        "event_rows_per_chunk": len(chunk_entries) / chunks,
        "event_bytes_per_chunk": sum(len(serialize_value(e)) for e in chunk_entries) / chunks,
        "event_rows_total": len(entries),
        "peak_rss_mb": peak_rss_mb(),
    }


def child_direct(rows: int) -> dict[str, Any]:
    """The same calls through the resource the jobs bind, from one op: the baseline."""
    import dagster as dg

    from grammar_ops.model import ModelCall
    from marigold_dagster.jobs.model_binding import model_resources

    calls = [
        ModelCall(purpose="classify", prompt=text(i), max_new_tokens=4, choices=LABELS)
        for i in range(rows)
    ]

    @dg.op(required_resource_keys={"worker_model"})
    def classify_all(context) -> dict:  # type: ignore[no-untyped-def]
        model = context.resources.worker_model
        started = time.perf_counter()
        results = model.complete_many(calls)
        return {
            "elapsed_s": time.perf_counter() - started,
            "failures": sum(1 for r in results if isinstance(r, Exception)),
            "batch_size": model.batch_size,
            "in_flight_limit": model.in_flight_limit,
        }

    @dg.job(resource_defs=model_resources({"worker_model"}))
    def direct() -> None:
        classify_all()

    out = direct.execute_in_process().output_for_node("classify_all")
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def run_child(kind: str, rows: int, chunk_rows: int | None, url: str) -> dict[str, Any]:
    env = {**os.environ, "MARIGOLD_SGLANG_URL": url, "MARIGOLD_SGLANG_MODEL": MODEL}
    chunk_args = [] if chunk_rows is None else ["--chunk-rows", str(chunk_rows)]
    with tempfile.TemporaryDirectory() as work:
        done = subprocess.run(
            [sys.executable, __file__, "--child", kind, "--rows", str(rows)]
            + chunk_args
            + ["--work", work],
            env=env,
            capture_output=True,
            text=True,
        )
    if done.returncode != 0:
        raise SystemExit(f"{kind} child at {rows} rows failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1000, 10000, 50000])
    parser.add_argument(
        "--chunk-rows",
        type=int,
        nargs="*",
        default=[],
        help="batch.size values to compare (none: the template omits it, taking the default)",
    )
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency-ms", type=float, default=40.0)
    parser.add_argument("--child", choices=["template", "direct"])
    parser.add_argument("--work", type=Path)
    args = parser.parse_args()
    chunk_settings: list[int | None] = list(args.chunk_rows) or [None]
    if args.child == "template":
        print(json.dumps(child_template(args.rows[0], chunk_settings[0], args.work)))
        return
    if args.child == "direct":
        print(json.dumps(child_direct(args.rows[0])))
        return

    from marigold_dagster.template.model import DEFAULT_BATCH_ROWS
    from resources.sglang_test_server import SGLangTestServer, SGLangTestServerConfig

    capacity = args.concurrency / (args.latency_ms / 1000.0)
    config = SGLangTestServerConfig(
        model=MODEL,
        max_running_requests=args.concurrency,
        max_queued_requests=max(args.rows) * 2,
        request_latency_s=args.latency_ms / 1000.0,
    )
    report: dict[str, Any] = {
        "capacity_prompts_per_s": capacity,
        "concurrency": args.concurrency,
        "latency_ms": args.latency_ms,
        "default_batch_size": DEFAULT_BATCH_ROWS,
        "runs": {},
    }
    with SGLangTestServer(config, in_subprocess=True) as server:
        for rows in args.rows:
            direct = run_child("direct", rows, None, server.url)
            for chunk_rows in chunk_settings:
                template = run_child("template", rows, chunk_rows, server.url)
                rate = rows / template["elapsed_s"]
                setting = "default" if chunk_rows is None else f"size_{chunk_rows}"
                report["runs"].setdefault(setting, {})[rows] = {
                    "template": template,
                    "direct": direct,
                    "template_rows_per_s": round(rate, 1),
                    "template_over_capacity": round(rate / capacity, 3),
                    "direct_over_capacity": round(rows / direct["elapsed_s"] / capacity, 3),
                    "template_over_direct": round(direct["elapsed_s"] / template["elapsed_s"], 3),
                    # Everything the template spends beyond the model work, per chunk: an upper
                    # bound on one chunk's fixed cost (it includes the load, split, merge, count).
                    "extra_s_per_chunk": round(
                        (template["elapsed_s"] - direct["elapsed_s"]) / template["chunks"], 3
                    ),
                }
    for runs in report["runs"].values():
        if 10000 in runs and 50000 in runs:
            big, small = runs[50000]["template"], runs[10000]["template"]
            runs["time_50k_over_10k"] = round(big["elapsed_s"] / small["elapsed_s"], 3)
            runs["rss_50k_over_10k"] = round(big["peak_rss_mb"] / small["peak_rss_mb"], 3)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

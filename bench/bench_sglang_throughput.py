"""Throughput of `SGLangResource.complete_many` from one Dagster step, against known capacity.

Starts the SGLang-compatible TEST DOUBLE (no model) in its own process with a fixed capacity
(`--concurrency` prompts running at once, each taking `--latency-ms`; the queue holds every
prompt), then sends `--prompts` classification prompts:

1. through `SGLangResource` from ONE Dagster op (`execute_in_process`), bound as the jobs bind
   it (`--batch-size` defaults to `model_binding.DEFAULT_BATCH_SIZE` prompts per request), with
   its in-flight limit as configured by default: derived from `/server_info` (`--concurrency`
   running) plus its `queue_headroom` waiting at the server (or `--max-in-flight`, exactly), and
2. through a plain asyncio + httpx loop written here, with `--concurrency` in flight: the naive
   baseline, which leaves a slot idle for a round trip each time one frees.

Capacity is `concurrency / latency` prompts per second. It prints JSON: the resource's in-flight
limit, each path's throughput, its ratio to capacity, and the resource's ratio to the plain
loop. Run from the repository root:

    .venv/bin/python bench/bench_sglang_throughput.py --prompts 5000 --concurrency 64 \\
        --latency-ms 40
"""

import argparse
import asyncio
import gc
import json
import sys
import time
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
from dagster import OpExecutionContext

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from grammar_ops.model import ModelCall, ModelError  # noqa: E402
from marigold_dagster.jobs.model_binding import DEFAULT_BATCH_SIZE  # noqa: E402
from resources.regex_choices import choices_regex  # noqa: E402
from resources.sglang import SGLangResource  # noqa: E402
from resources.sglang_test_server import SGLangTestServer, SGLangTestServerConfig  # noqa: E402

MODEL = "sglang-test-double"
LABELS = ("low", "medium", "high")
INSTRUCTION = (
    "You are a contract analyst. Classify the risk of the clause below as low, medium or high.\n"
    "Answer with one word.\n\nClause: "
)


def prompts(count: int) -> list[str]:
    """Classification prompts sharing one instruction prefix, as a template step sends them."""
    return [
        f"{INSTRUCTION}Clause {i}: the supplier's liability is capped at {i * 37 % 1000} EUR."
        for i in range(count)
    ]


def run_resource(
    url: str, texts: list[str], batch_size: int, max_in_flight: int | None
) -> dict[str, Any]:
    """Send every prompt through the resource from one op of one Dagster job."""
    calls = [
        ModelCall(purpose="classify", prompt=t, max_new_tokens=4, choices=LABELS) for t in texts
    ]

    @dg.op
    def classify_all(context: OpExecutionContext, model: SGLangResource) -> dict[str, Any]:
        started = time.perf_counter()
        with model.usage.step(str(context.op_handle)) as meter:
            results = model.complete_many(calls)
        elapsed = time.perf_counter() - started
        failures = [r for r in results if isinstance(r, ModelError)]
        return {
            "in_flight_limit": model.in_flight_limit,
            "elapsed_s": elapsed,
            "failures": len(failures),
            "first_failure": str(failures[0]) if failures else None,
            "usage": meter.as_metadata(),
        }

    @dg.job
    def throughput_bench() -> None:
        classify_all()

    started = time.perf_counter()
    model = SGLangResource(
        base_url=url, model=MODEL, max_in_flight=max_in_flight, batch_size=batch_size
    )
    result = throughput_bench.execute_in_process(resources={"model": model})
    out = result.output_for_node("classify_all")
    out["job_wall_s"] = time.perf_counter() - started
    return out


async def _plain_loop(url: str, texts: list[str], concurrency: int) -> dict[str, Any]:
    slots = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    regex = choices_regex(LABELS)
    failures = 0
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:

        async def one(text: str) -> None:
            nonlocal failures
            body = {"text": text, "sampling_params": {"max_new_tokens": 4, "regex": regex}}
            async with slots:
                response = await client.post(url + "/generate", json=body)
            if response.status_code != 200 or response.json()["text"] not in LABELS:
                failures += 1

        started = time.perf_counter()
        await asyncio.gather(*(one(t) for t in texts))
        return {"elapsed_s": time.perf_counter() - started, "failures": failures}


def run_plain(url: str, texts: list[str], concurrency: int) -> dict[str, Any]:
    """Send every prompt through a plain asyncio + httpx loop with the same concurrency."""
    return asyncio.run(_plain_loop(url, texts, concurrency))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--prompts", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency-ms", type=float, default=40.0)
    parser.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        help="prompts per native /generate request (default: what the jobs bind)",
    )
    parser.add_argument(
        "--max-in-flight",
        type=int,
        default=None,
        help="the resource's max_in_flight (default: derived from /server_info plus headroom)",
    )
    parser.add_argument(
        "--skip-plain", action="store_true", help="measure only the resource (faster)"
    )
    args = parser.parse_args(argv)
    # Dagster's imports leave a large heap; full collections of it pause this process for
    # 100-200 ms at a time. Freezing it (for both paths alike) keeps those pauses out of the
    # figures, which measure the client, not the collector.
    gc.freeze()

    texts = prompts(args.prompts)
    capacity = args.concurrency / (args.latency_ms / 1000.0)
    config = SGLangTestServerConfig(
        model=MODEL,
        max_running_requests=args.concurrency,
        max_queued_requests=args.prompts * 2,
        request_latency_s=args.latency_ms / 1000.0,
    )
    with SGLangTestServer(config, in_subprocess=True) as server:
        run_plain(server.url, texts[:200], args.concurrency)  # warm the server process
        resource = run_resource(server.url, texts, args.batch_size, args.max_in_flight)
        during_resource = server.stats()
        plain = None if args.skip_plain else run_plain(server.url, texts, args.concurrency)
        stats = server.stats()

    def rate(elapsed: float) -> float:
        return args.prompts / elapsed

    report = {
        "prompts": args.prompts,
        "concurrency": args.concurrency,
        "latency_ms": args.latency_ms,
        "batch_size": args.batch_size,
        "capacity_prompts_per_s": capacity,
        "resource_in_flight_limit": resource["in_flight_limit"],
        "plain_in_flight_limit": args.concurrency,
        "resource": {
            **resource,
            "prompts_per_s": rate(resource["elapsed_s"]),
            "ratio_to_capacity": rate(resource["elapsed_s"]) / capacity,
        },
        "plain_asyncio_httpx": plain
        and {
            **plain,
            "prompts_per_s": rate(plain["elapsed_s"]),
            "ratio_to_capacity": rate(plain["elapsed_s"]) / capacity,
        },
        "resource_vs_plain": plain and plain["elapsed_s"] / resource["elapsed_s"],
        "server_max_running_observed": stats.max_running_observed,
        "server_max_in_flight_observed_up_to_resource_run": during_resource.max_in_flight_observed,
        "server_status_counts": stats.status_counts,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

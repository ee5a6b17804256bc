"""The real-model lane: llama.cpp's llama-server with SmolLM2-135M on 127.0.0.1, over HTTP.

Every test here uses the session's `llama_server` (so `tests/conftest.py` marks it `real_model`
and `slow`). The server and model come from the cache `scripts/setup.sh --dev` fills; when they
are missing the lane fails saying so, it never skips. The platform talks to the server as it
talks to any OpenAI-compatible server: `SGLangResource(server="openai")`.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from marigold_dagster.jobs.compiler import compile_frame
from marigold_dagster.records.run_summary import summarise_run
from marigold_dagster.template.loader import load_template
from resources.llama_server import (
    SMOLLM2_ALIAS,
    LlamaServer,
    RealModelMissingError,
    require_real_model,
)
from resources.sglang import SGLangResource
from tests.support.template_run import TemplateRun

ROOT = Path(__file__).parents[2]
CONTRACTS = ROOT / "templates" / "data" / "contracts.csv"


@pytest.fixture(scope="session")
def llama_server() -> Iterator[LlamaServer]:
    """SmolLM2-135M-Instruct served by the cached llama-server (one thread, one slot)."""
    try:
        binary, model = require_real_model()
    except RealModelMissingError as missing:
        reason = str(missing)
    else:
        reason = ""
    if reason:
        pytest.fail(reason, pytrace=False)  # never a skip: the lane is part of the suite
    started = time.perf_counter()
    with LlamaServer(binary, model, ctx_size=4096, threads=1, parallel=1) as server:
        print(f"\nllama-server healthy at {server.url} in {time.perf_counter() - started:.1f}s")
        yield server


def model_resource(server: LlamaServer, **overrides: Any) -> SGLangResource:
    """The resource config that binds the platform to the llama-server."""
    config: dict[str, Any] = {
        "base_url": server.url,
        "server": "openai",
        "model": SMOLLM2_ALIAS,
        "request_timeout_s": 300.0,  # a CPU shared with other work: generous
        "retry_max_attempts": 2,
        # The planner asks for up to 2048 tokens: minutes at this model's ~10 tokens/s.
        "max_new_tokens_limit": 384,
        **overrides,
    }
    return SGLangResource(**config)


@pytest.fixture
def real_model(llama_server: LlamaServer) -> Iterator[SGLangResource]:
    """An `SGLangResource(server='openai')` set up against the llama-server."""
    resource = model_resource(llama_server)
    with resource.yield_for_execution(dg.build_init_resource_context()) as model:
        yield model


def write_contracts(folder: Path, rows: int) -> Path:
    """The first `rows` contracts of the sample data as `contracts.csv` in `folder`."""
    with CONTRACTS.open(newline="") as source:
        reader = csv.DictReader(source)
        chosen = [row for _, row in zip(range(rows), reader, strict=False)]
        fields = reader.fieldnames or []
    target = folder / "contracts.csv"
    with target.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=fields)
        writer.writeheader()
        writer.writerows(chosen)
    return target


def run_real_template(
    server: LlamaServer,
    folder: Path,
    name: str,
    text: str,
    instance: dg.DagsterInstance,
) -> TemplateRun:
    """Load `text` as template `name` in `folder`, bind every model role to the llama-server,
    and run it in process."""
    path = folder / f"{name}.yaml"
    path.write_text(text)
    frame = load_template(path)
    model = model_resource(server)
    job = compile_frame(frame, resource_defs={"planner_model": model, "worker_model": model})
    result = job.execute_in_process(instance=instance, raise_on_error=False)
    return TemplateRun(frame, result, summarise_run(instance, result.run_id, frame))


def step_outputs(run: TemplateRun, key: str) -> dict[str, Any]:
    """The metadata of step `key`'s output."""
    for event in run.result.all_events:
        if event.event_type_value == "STEP_OUTPUT" and event.step_key == key:
            return {k: v.value for k, v in event.step_output_data.metadata.items()}
    raise AssertionError(f"{key} produced no output")


def step_failure(run: TemplateRun, key: str) -> tuple[str, dict[str, Any]] | None:
    """Step `key`'s failure description and metadata, or None when it did not fail."""
    for event in run.result.all_events:
        if event.event_type_value == "STEP_FAILURE" and event.step_key == key:
            data = event.step_failure_data.user_failure_data
            if data is None:
                error = event.step_failure_data.error
                raise AssertionError(f"{key} crashed instead of failing with a reason: {error}")
            return data.description or "", {k: v.value for k, v in data.metadata.items()}
    return None

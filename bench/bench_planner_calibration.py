"""Planner calibration: how often a real model's plans are valid, by schema tier and decoding.

For a fixed set of planning goals over the contracts sample (one planning step allowing the
same six capabilities), this asks a planner model through the platform's own planning call
(`plan_fragment`: the prompt, validation, and a re-plan with the diagnostics, up to
`--max-attempts`) and reports, per capability-schema tier in the prompt (1: names and
one-liners; 2: also input/output contracts; 3: also full configuration) and decoding:
`constrained` (the platform's fragment schema sent as `response_format`), `tight` (a bounded
variant of it, `tight_fragment_schema`: `with` limited to the allowed capabilities' config
fields, `uses` before `with`, shorter texts) and `free` (no schema; the answer's first JSON
object is taken from the text):

- the share of goals whose first answer was a valid fragment, and whose answer was valid
  within `--max-attempts`;
- prompt and completion tokens per plan (every attempt, rejected ones included, as the server
  counted them), and seconds per plan;
- the findings that rejected first answers, by code.

By default it starts the llama-server and SmolLM2-135M that `scripts/setup.sh --dev` caches;
`--base-url` points it at any server instead (`--server sglang` for SGLang):

    python bench/bench_planner_calibration.py --goals 3 --tiers 1 2 3
    python bench/bench_planner_calibration.py --base-url http://gpu-1:8000 --server openai \\
        --model Qwen/Qwen2.5-7B-Instruct --goals 8 --max-new-tokens 2048

The table goes to stdout; `--json PATH` also writes every plan's record.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow.csv as pacsv

from grammar_ops import Kind, ModelCall, ModelError, ModelReply
from grammar_ops.model import complete_each
from marigold_dagster.artifacts import StepValue, store_value
from marigold_dagster.errors import PlanRejected
from marigold_dagster.planning.budget import BudgetStatus, BudgetUse
from marigold_dagster.planning.planner import PlanRequest, plan_fragment
from marigold_dagster.runtime.planned import PlanProgress, plan_request
from marigold_dagster.template.loader import load_template
from resources.llama_server import LlamaServer, require_real_model
from resources.model_errors import ModelAnswerError
from resources.sglang import SGLangResource

ROOT = Path(__file__).parents[1]

GOALS = (
    "Count the contracts per counterparty.",
    "Keep only the contracts worth more than 100000 USD a year, then count them.",
    "Extract the liability terms of every contract.",
    "Label each contract low, medium or high risk, then count the contracts per label.",
    "Total the annual value of the contracts per counterparty.",
    "Keep the contracts that mention indemnity and extract their liability terms.",
)

TEMPLATE = """name: calibration
version: 1
inputs: {contracts: {kind: table, default: contracts.csv}}
models: {planner: planner_model, worker: worker_model}
budget: {max_steps: 30, max_tokens: 500000, max_cost_usd: 5, max_fanout: 16,
         max_planning_phases: 1}
steps:
  - {name: load, uses: acquire.read_table, with: {input: contracts}}
  - name: plan
    kind: planning
    depends_on: [load]
    planning:
      goal: placeholder
      allow:
        - transform.filter
        - aggregate.count
        - aggregate.group
        - llm.classify
        - llm.extract
        - extract_fields
      max_steps: 4
      max_depth: 3
      max_attempts: 2
"""


_BOUNDED_VALUE = {
    "anyOf": [
        {"type": "string", "maxLength": 120},
        {"type": "number"},
        {"type": "boolean"},
        {"type": "array", "maxItems": 4, "items": {"type": "string", "maxLength": 40}},
    ]
}


def tight_fragment_schema(schema: dict[str, Any], catalog: Any, names: list[str]) -> dict[str, Any]:
    """The platform's fragment schema with `with` bounded, `uses` first, and shorter texts.

    The platform's schema leaves `with` a free object (a small model nests objects in it until
    its token limit) and puts `uses` after `with` (a model writes the configuration before it
    has chosen the capability). This variant, measured as decoding `tight`, allows only the
    config fields of the allowed capabilities, each a bounded scalar or short list.
    """
    from grammar_ops import config_json_schema

    fields: dict[str, Any] = {}
    for name in names:
        for field in config_json_schema(catalog, name).get("properties", {}):
            fields[field] = _BOUNDED_VALUE
    bounded_with = {"type": "object", "properties": fields, "additionalProperties": False}
    tight = json.loads(json.dumps(schema))
    tight["properties"]["reasoning"]["maxLength"] = 300
    items = tight["properties"]["steps"]["items"]
    for form in items.get("anyOf", [items]):
        props = form["properties"]
        props["reason"]["maxLength"] = 120
        props["depends_on"]["items"] = {"type": "string", "maxLength": 48}
        if "with" in props:
            props["with"] = bounded_with
        order = ["id", "uses", "compose", "with", "depends_on", "reason"]
        form["properties"] = {k: props[k] for k in order if k in props}
    return tight


class Tight:
    """A planner client that sends `tight_fragment_schema` instead of the platform's schema."""

    def __init__(self, model: SGLangResource, request: PlanRequest):
        self.model = model
        scope = request.scope
        self.schema = tight_fragment_schema(scope.json_schema(), scope.catalog, list(scope.presets))

    @property
    def model_name(self) -> str:
        return self.model.model_name

    def complete(self, call: ModelCall) -> ModelReply:
        if call.json_schema is not None and "steps" in call.json_schema.get("properties", {}):
            call = replace(call, json_schema=self.schema)
        return self.model.complete(call)

    def complete_many(self, calls: Sequence[ModelCall]) -> list[ModelReply | ModelError]:
        return complete_each(self.complete, calls)


class FreeText:
    """A planner client without constrained decoding: the call goes without its JSON schema,
    and the first JSON object in the answer (fenced or not) is taken as the fragment."""

    def __init__(self, model: SGLangResource):
        self.model = model

    @property
    def model_name(self) -> str:
        return self.model.model_name

    def complete(self, call: ModelCall) -> ModelReply:
        reply = self.model.complete(replace(call, json_schema=None))
        if call.json_schema is None:
            return reply
        value = first_json_object(reply.text)
        if value is None:
            error = ModelAnswerError("the free-text answer holds no JSON object")
            error.last_response = reply.text
            raise error
        return replace(reply, value=value)

    def complete_many(self, calls: Sequence[ModelCall]) -> list[ModelReply | ModelError]:
        return complete_each(self.complete, calls)


def first_json_object(text: str) -> Any:
    """The first `{...}` in `text` that parses as JSON, or None."""
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            value, _ = decoder.raw_decode(text[match.start() :])
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def planning_request(folder: Path, rows: int) -> PlanRequest:
    """The calibration template's planning request, over the first `rows` contracts."""
    table = pacsv.read_csv(ROOT / "templates" / "data" / "contracts.csv").slice(0, rows)
    pacsv.write_csv(table, folder / "contracts.csv")
    (folder / "calibration.yaml").write_text(TEMPLATE)
    frame = load_template(folder / "calibration.yaml")
    stored = store_value("load", table, folder)
    value = StepValue("load", Kind.TABLE, stored.payload)
    status = BudgetStatus(frame.template.budget, BudgetUse())
    return plan_request(
        frame, frame.steps["plan"], PlanProgress({"load": value}, "load"), status, 1
    )


@contextmanager
def planner_model(args: argparse.Namespace) -> Iterator[tuple[SGLangResource, str]]:
    """The planner resource (starting the cached llama-server unless --base-url is given)."""
    with ExitStack() as stack:
        base_url, server, model = args.base_url, args.server, args.model
        if base_url is None:
            binary, gguf = require_real_model()
            llama = stack.enter_context(
                LlamaServer(binary, gguf, ctx_size=args.ctx_size, threads=args.threads)
            )
            base_url, server, model = llama.url, "openai", llama.alias
        resource = SGLangResource(
            base_url=base_url,
            server=server,
            model=model,
            max_new_tokens_limit=args.max_new_tokens,
            request_timeout_s=args.request_timeout_s,
            retry_max_attempts=2,
        )
        opened = stack.enter_context(resource.yield_for_execution(dg.build_init_resource_context()))
        yield opened, base_url


DECODINGS = ("constrained", "tight", "free")


def plan_once(
    model: SGLangResource, request: PlanRequest, decoding: str, key: str
) -> dict[str, Any]:
    client: Any = {
        "constrained": lambda: model,
        "tight": lambda: Tight(model, request),
        "free": lambda: FreeText(model),
    }[decoding]()
    started = time.perf_counter()
    with model.usage.step(key) as meter:
        try:
            outcome = plan_fragment(client, request)
        except PlanRejected as rejected:
            outcome = rejected.outcome
    first = outcome.attempts[0]
    return {
        "goal": request.goal,
        "tier": request.tier,
        "decoding": decoding,
        "first_valid": first.accepted,
        "valid": outcome.fragment is not None,
        "attempts": len(outcome.attempts),
        "first_findings": sorted({f.code for f in first.findings}),
        "prompt_tokens": meter.prompt_tokens,
        "completion_tokens": meter.completion_tokens,
        "cached_tokens": meter.cached_tokens,
        "seconds": round(time.perf_counter() - started, 2),
        "answers": [a.answer for a in outcome.attempts],
    }


def table(records: list[dict[str, Any]]) -> str:
    header = (
        f"{'tier':<8}{'decoding':<13}{'plans':>6}{'valid 1st':>11}{'valid ≤max':>12}"
        f"{'prompt tok':>12}{'compl tok':>11}{'s/plan':>8}  first-answer findings"
    )
    lines = [header, "-" * len(header)]
    groups: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault((record["tier"], record["decoding"]), []).append(record)
    rank = {d: i for i, d in enumerate(DECODINGS)}
    for (tier, decoding), group in sorted(groups.items(), key=lambda g: (g[0][0], rank[g[0][1]])):
        n = len(group)
        codes = Counter(code for r in group for code in r["first_findings"])
        lines.append(
            f"{'1+2+3'[: 2 * tier - 1]:<8}{decoding:<13}"
            f"{n:>6}{sum(r['first_valid'] for r in group) / n:>11.0%}"
            f"{sum(r['valid'] for r in group) / n:>12.0%}"
            f"{sum(r['prompt_tokens'] for r in group) / n:>12.0f}"
            f"{sum(r['completion_tokens'] for r in group) / n:>11.0f}"
            f"{sum(r['seconds'] for r in group) / n:>8.1f}  "
            + (", ".join(f"{c} {k}" for c, k in ((c, k) for k, c in codes.most_common(3))) or "-")
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--goals", type=int, default=3, help=f"goals to plan (1-{len(GOALS)})")
    parser.add_argument("--tiers", type=int, nargs="+", default=[1, 2, 3], choices=[1, 2, 3])
    parser.add_argument(
        "--decoding", nargs="+", choices=DECODINGS, default=list(DECODINGS),
        help="constrained: the platform's fragment schema as response_format; tight: a bounded "
        "variant of it (see tight_fragment_schema); free: no schema, JSON taken from the text",
    )  # fmt: skip
    parser.add_argument("--max-attempts", type=int, default=2)
    parser.add_argument("--rows", type=int, default=6, help="contracts in the step's input")
    parser.add_argument("--base-url", help="a running server (default: start llama-server)")
    parser.add_argument("--server", choices=["openai", "sglang"], default="openai")
    parser.add_argument("--model", help="the model the server serves (default: what it lists)")
    parser.add_argument(
        "--max-new-tokens", type=int, default=384,
        help="cap on each planner answer (the platform asks for 2048; a CPU needs less)",
    )  # fmt: skip
    parser.add_argument("--request-timeout-s", type=float, default=300.0)
    parser.add_argument("--ctx-size", type=int, default=4096, help="llama-server only")
    parser.add_argument("--threads", type=int, default=1, help="llama-server only")
    parser.add_argument("--json", type=Path, help="write every plan's record here")
    args = parser.parse_args(argv)

    goals = GOALS[: max(1, min(args.goals, len(GOALS)))]
    records: list[dict[str, Any]] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, planner_model(args) as (model, url):
        base = planning_request(Path(tmp), args.rows)
        print(f"planner {model.model_name!r} at {url} ({model.server_label})", flush=True)
        # Tier, then decoding, then goal: consecutive calls share the longest prompt prefix.
        for tier in args.tiers:
            for decoding in args.decoding:
                for index, goal in enumerate(goals):
                    request = replace(base, goal=goal, tier=tier, max_attempts=args.max_attempts)
                    record = plan_once(model, request, decoding, f"t{tier}-{decoding}-{index}")
                    records.append(record)
                    print(
                        f"  tier {tier} {decoding} goal "
                        f"{index}: valid first={record['first_valid']} within="
                        f"{record['valid']} {record['seconds']}s",
                        flush=True,
                    )
    elapsed = time.perf_counter() - started
    print()
    print(table(records))
    print(
        f"\n{len(records)} plans in {elapsed:.0f}s; max_attempts {args.max_attempts}, answers "
        f"capped at {args.max_new_tokens} tokens, {args.rows} contracts in the input"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {"model": model.model_name, "args": {k: str(v) for k, v in vars(args).items()},
                 "elapsed_s": round(elapsed, 1), "plans": records},
                indent=2, default=str,
            )
        )  # fmt: skip


if __name__ == "__main__":
    main()

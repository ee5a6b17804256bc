"""Planner prompt size by capability tier, and prefix-cache share across a batch of plans.

For the flagship's planning step (`contract_review.deep_review`) this prints, in cl100k tokens:
the prompt with tier 1 only (names and one-liners of the allowed capabilities), the prompt the
step sends by default (tiers 1-3 of the allowed capabilities), and the prompt with the full
schema (tiers 1-3 of the whole catalog), with ratios against the full schema. Then it plans 100
times against the SGLang test server, each time with a different slice of contracts as the
step's input, through `SGLangResource`, and prints the share of prompt tokens the server served
from its prefix cache (server-side token counts). Targets: tier 1 <= 40% of the full schema;
>= 80% of prompt tokens cached.

    python bench/bench_planning_prompt.py --plans 100
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
from dagster import build_resources

from grammar_ops import Kind, count_tokens
from marigold_dagster.artifacts import store_value
from marigold_dagster.errors import PlanRejected
from marigold_dagster.planning.budget import BudgetStatus, BudgetUse
from marigold_dagster.planning.planner import PlannerPrompt, PlanRequest, plan_fragment
from marigold_dagster.planning.prompt import prompt_prefix, prompt_variable, results_section
from marigold_dagster.runtime.planned import PlanProgress, plan_request
from marigold_dagster.template.loader import load_template
from resources.sglang import SGLangResource
from resources.sglang_test_server import GenerationRequest, SGLangTestServer

ROOT = Path(__file__).parents[1]


VALID_PLAN = json.dumps(
    {
        "reasoning": "filter the risky contracts, extract their terms, total per counterparty",
        "steps": [
            {
                "id": "risky",
                "uses": "transform.filter",
                "with": {},
                "depends_on": [],
                "reason": "only high-risk contracts need review",
            },
            {
                "id": "terms",
                "uses": "extract_fields",
                "with": {},
                "depends_on": ["risky"],
                "reason": "liability terms",
            },
            {
                "id": "exposure",
                "uses": "aggregate.group",
                "with": {},
                "depends_on": ["terms"],
                "reason": "exposure per counterparty",
            },
        ],
        "done": False,
    }
)


def valid_planner(request: GenerationRequest) -> str:
    """A scripted planner that answers every call with the same valid fragment."""
    return VALID_PLAN


def contracts(offset: int, rows: int) -> pa.Table:
    """A slice of the flagship's contracts, labelled as triage would label them."""
    import pyarrow.csv as csv

    table = csv.read_csv(ROOT / "templates" / "data" / "contracts.csv")
    part = table.slice(offset % max(table.num_rows - rows, 1), rows)
    risks = [
        "high" if "liability" in t or "indemnity" in t else "low"
        for t in part.column("text").to_pylist()
    ]
    return part.append_column("risk", pa.array(risks))


def prompt_tokens(request: PlanRequest, tier: int, everything: bool = False) -> int:
    scope = request.scope
    names = scope.catalog.names() if everything else list(scope.presets)
    prefix = prompt_prefix(
        scope.catalog,
        request.goal,
        {name: scope.presets.get(name, {}) for name in names},
        tier=tier,
        max_steps=scope.max_steps,
        max_depth=scope.max_depth,
    )
    variable = prompt_variable(results_section(request.results), request.budget)
    prompt = PlannerPrompt(prefix, variable, tier)
    return count_tokens(prompt.text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plans", type=int, default=100, help="plans in the cache batch")
    parser.add_argument("--rows", type=int, default=8, help="contracts in each plan's input")
    args = parser.parse_args(argv)

    frame = load_template(ROOT / "templates" / "contract_review.yaml")
    step = frame.steps["deep_review"]
    status = BudgetStatus(frame.template.budget, BudgetUse())
    with tempfile.TemporaryDirectory() as tmp:

        def request_for(index: int) -> PlanRequest:
            value = store_value(f"route_{index}", contracts(index * 3, args.rows), Path(tmp))
            value = replace(value, step="route", kind=Kind.TABLE)
            return plan_request(frame, step, PlanProgress({"route": value}, "route"), status, 1)

        first = request_for(0)
        tier1 = prompt_tokens(first, 1)
        default = prompt_tokens(first, first.tier)
        full = prompt_tokens(first, 3, everything=True)
        sizes = {
            "tier1_allowed_tokens": tier1,
            f"tiers1to{first.tier}_allowed_tokens": default,
            "full_schema_tokens": full,
            "tier1_to_full_ratio": round(tier1 / full, 3),
            "default_to_full_ratio": round(default / full, 3),
            "tokenizer": "cl100k_base",
        }

        prompt_total = cached_total = calls = accepted = 0
        with SGLangTestServer(model="planner-test-double", responder=valid_planner) as server:
            resource = SGLangResource(base_url=server.url, model="planner-test-double")
            with build_resources({"planner": resource}) as built:
                model = built.planner
                for index in range(args.plans):
                    try:
                        outcome = plan_fragment(model, request_for(index))
                        accepted += 1
                    except PlanRejected as rejected:
                        outcome = rejected.outcome
                    for attempt in outcome.attempts:
                        calls += 1
                        prompt_total += attempt.prompt_tokens
                        cached_total += attempt.cached_tokens
        cache = {
            "plans": args.plans,
            "planner_calls": calls,
            "plans_accepted": accepted,
            "prompt_tokens": prompt_total,
            "cached_tokens": cached_total,
            "cached_share": round(cached_total / max(prompt_total, 1), 3),
            "token_counts": "the test server's (word and punctuation runs)",
        }
    print(json.dumps({"prompt_sizes": sizes, "prefix_cache": cache}, indent=2))


if __name__ == "__main__":
    main()

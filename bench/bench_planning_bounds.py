"""Planning bounds: estimated vs actual tokens of planned steps, Dagster steps per planned step.

Two runs, in process on a throwaway instance:
- the flagship `contract_review` with the offline model (its default input);
- `contract_review` with `max_phases: 3`, the planner scripted through the SGLang test server
  (phase 1 filters and extracts, phase 2 counts per risk and liability, phase 3 answers done).

For each phase it prints the validator's token estimate beside the tokens the planned steps
then used, and for each run the Dagster steps started per planned step, after subtracting the
template's own steps and 2 per phase that ran (its plan op started). Targets: estimate within
2x; at most 1.5 steps per planned step.

    python bench/bench_planning_bounds.py
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for harness

from dagster import DagsterInstance  # noqa: E402

from grammar_ops import standard_catalog  # noqa: E402
from harness.scripted_planner import ScriptedPlanner, fragment, step  # noqa: E402
from marigold_dagster.jobs.compiler import compile_frame  # noqa: E402
from marigold_dagster.jobs.definitions import build_defs  # noqa: E402
from marigold_dagster.template.loader import load_template  # noqa: E402
from resources.sglang import SGLangResource  # noqa: E402
from resources.sglang_test_server import SGLangTestServer  # noqa: E402

ROOT = Path(__file__).parents[1]


def figures(result: Any, planning_step: str, template_steps: int) -> dict[str, Any]:
    """Estimate vs actual per phase, and steps started per planned step, from a run's events."""
    started = [e.step_key for e in result.all_events if e.event_type_value == "STEP_START"]
    phases: dict[int, dict[str, Any]] = {}
    for event in result.all_events:
        if event.event_type_value != "STEP_OUTPUT" or event.step_key is None:
            continue
        data = {k: v.value for k, v in event.step_output_data.metadata.items()}
        key = event.step_key
        match = re.fullmatch(rf"{planning_step}__(?:p(\d+)_)?(plan|L\d+\[.+\])", key)
        if not match:
            continue
        phase = int(match.group(1) or 1)
        entry = phases.setdefault(phase, {"estimate": 0, "actual": 0, "planned_steps": 0})
        if match.group(2) == "plan" and "marigold/estimate" in data:
            found = re.search(r"~([\d,]+) tokens", data["marigold/estimate"])
            entry["estimate"] = int(found[1].replace(",", "")) if found else 0
        elif match.group(2) != "plan":
            entry["actual"] += int(data.get("llm.total_tokens", 0))
            entry["planned_steps"] += 1
    planned = sum(p["planned_steps"] for p in phases.values())
    ran = sum(1 for key in started if re.fullmatch(rf"{planning_step}__(p\d+_)?plan", key))
    overhead = len(started) - template_steps - 2 * ran
    return {
        "phases": {
            phase: {**p, "ratio": round(p["estimate"] / p["actual"], 2) if p["actual"] else None}
            for phase, p in sorted(phases.items())
        },
        "dagster_steps_started": len(started),
        "template_steps": template_steps,
        "planned_steps": planned,
        "phases_that_ran": ran,
        "steps_per_planned_step": round(overhead / planned, 2) if planned else None,
        "started": started,
    }


def flagship() -> dict[str, Any]:
    defs = build_defs(ROOT / "templates")
    job = defs.get_job_def("contract_review")
    with tempfile.TemporaryDirectory() as home:
        with DagsterInstance.ephemeral(tempdir=home) as instance:
            result = job.execute_in_process(instance=instance, raise_on_error=False)
            started = [e.step_key for e in result.all_events if e.event_type_value == "STEP_START"]
            template_steps = sum(1 for key in started if not key.startswith("deep_review__"))
            return {"success": result.success, **figures(result, "deep_review", template_steps)}


def multi_phase() -> dict[str, Any]:
    """contract_review with `max_phases: 3`, its planner scripted through the test server."""
    script = ScriptedPlanner()
    script.answers[:] = [
        fragment(
            step("high", "transform.filter"),
            step("terms", "extract_fields", ["high"]),
            reasoning="keep the high-risk contracts and extract their liability terms",
        ),
        fragment(
            step("per_risk", "aggregate.count", ["terms"], by=["risk", "liability"]),
            reasoning="count the reviewed contracts per risk and liability",
        ),
        fragment(done=True, reasoning="exposure totalled"),
    ]
    text = (ROOT / "templates" / "contract_review.yaml").read_text()
    text = text.replace("max_phases: 1", "max_phases: 3").replace(
        "max_planning_phases: 2", "max_planning_phases: 3"
    )
    text = text.replace(
        "default: data/contracts.csv", f"default: {ROOT}/templates/data/contracts.csv"
    )
    with tempfile.TemporaryDirectory() as home:
        path = Path(home) / "contract_review.yaml"
        path.write_text(text)
        frame = load_template(path, standard_catalog())
        with SGLangTestServer(model="planner-double", responder=script) as server:
            model = SGLangResource(base_url=server.url, model="planner-double")
            job = compile_frame(
                frame, resource_defs={"planner_model": model, "worker_model": model}
            )
            with DagsterInstance.ephemeral(tempdir=home) as instance:
                result = job.execute_in_process(instance=instance, raise_on_error=False)
                started = [
                    e.step_key for e in result.all_events if e.event_type_value == "STEP_START"
                ]
                template_steps = sum(1 for key in started if not key.startswith("deep_review__"))
                return {
                    "success": result.success,
                    **figures(result, "deep_review", template_steps),
                }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--show-steps", action="store_true", help="list the steps started")
    args = parser.parse_args()
    report = {"flagship": flagship(), "three_phase": multi_phase()}
    if not args.show_steps:
        for run in report.values():
            run.pop("started")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

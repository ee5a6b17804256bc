"""The offline planner keeps the contract: its fragments validate for every template it plans."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import build_init_resource_context

from grammar_ops import Kind, standard_catalog
from harness.scripted_planner import TEMPLATE
from marigold_dagster.artifacts import StepValue
from marigold_dagster.planning.budget import BudgetStatus, BudgetUse
from marigold_dagster.planning.planner import plan_fragment
from marigold_dagster.runtime.planned import PlanProgress, plan_request
from marigold_dagster.template.loader import load_template
from resources.offline_model import OfflineModel
from tests.support.capabilities import TEST_CAPABILITIES

ROOT = Path(__file__).parents[2]
CONTRACTS = [
    {
        "contract_id": f"C{i}",
        "counterparty": f"Party {i % 3}",
        "annual_value_usd": 1000 * i,
        "text": "Liability is unlimited." if i % 2 else "Liability is capped.",
        "risk": "high" if i % 2 else "low",
    }
    for i in range(6)
]
MARKED = [{"id": i, "trail": "load", "text": f"row {i}"} for i in range(4)]


def flagship(tmp_path: Path, pinned: bool) -> Path:
    text = (ROOT / "templates" / "contract_review.yaml").read_text()
    if not pinned:
        text = text.replace(
            """        - uses: transform.filter
          with: {where: "risk == 'high'"}""",
            "        - transform.filter",
        )
    text = text.replace("default: data/contracts.csv", "default: contracts.csv")
    (tmp_path / "contracts.csv").write_text("contract_id\nC1\n")
    path = tmp_path / "contract_review.yaml"
    path.write_text(text)
    return path


def planned(tmp_path: Path, pinned: bool) -> Path:
    text = TEMPLATE.format(rows=4, max_depth=3, max_phases=1, max_steps=30, max_tokens=200_000)
    if not pinned:
        text = text.replace(
            """{uses: transform.filter, with: {where: "id < 2"}}""", "transform.filter"
        )
    path = tmp_path / "planned.yaml"
    path.write_text(text)
    return path


CASES = {
    "contract_review": (flagship, CONTRACTS),
    "planned (test capabilities)": (planned, MARKED),
}


@pytest.mark.parametrize("pinned", [True, False], ids=["pinned filter", "unpinned filter"])
@pytest.mark.parametrize("case", list(CASES))
def test_the_offline_planner_plans_a_valid_fragment(tmp_path, case, pinned):
    write, rows = CASES[case]
    catalog = standard_catalog().extended(TEST_CAPABILITIES)
    frame = load_template(write(tmp_path, pinned), catalog)
    [step] = [s for s in frame.steps.values() if s.kind.value == "planning"]
    inputs = {dep: StepValue(dep, Kind.RECORDS, rows) for dep in step.step.depends_on}
    progress = PlanProgress(inputs, step.step.depends_on[0])
    status = BudgetStatus(frame.template.budget, BudgetUse())
    request = plan_request(frame, step, progress, status, 1)
    model = OfflineModel()
    with model.yield_for_execution(build_init_resource_context()) as offline:
        outcome = plan_fragment(offline, request)
    assert [a.accepted for a in outcome.attempts] == [True], outcome.attempts[0].findings
    assert outcome.fragment is not None and outcome.fragment.steps
    counted = [s for s in outcome.fragment.steps if s.source == "aggregate.count"]
    assert all(s.config.get("by") for s in counted), "a count groups by what the goal names"

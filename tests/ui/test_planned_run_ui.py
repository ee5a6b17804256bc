"""The Dagster UI shows a planned run: its planned steps, their provenance and the lineage.

The flagship template is launched through GraphQL as the Launchpad does (`launchRun`, run config
`{}`: the template's input has a default), on a real webserver and daemon over PostgreSQL;
headless chromium then reads the run page, a planned step's asset page and the plan's lineage.
Screenshots land in test-artifacts/ui/; the README's (docs/planned_run.png and
docs/planned_step_asset.png) are written when missing or MARIGOLD_UPDATE_SCREENSHOTS=1.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, expect

from harness.deployment import ROOT, DagsterDeployment

JOB, PLANNING_STEP = "contract_review", "deep_review"
PLANNED_STEP_KEY = re.compile(rf"^{PLANNING_STEP}__L\d+\[(?P<id>[A-Za-z0-9_]+)\]$")
PROVENANCE = [
    "marigold/created_by",
    "marigold/planning_step",
    "marigold/fragment_id",
    "marigold/planning_phase",
    "marigold/planning_reasoning",
    "marigold/handler_type",
    "marigold/composition_source",
    "marigold/composition_spec",
]
DOCS = ROOT / "docs"


def keep_for_readme(artifacts: Path, name: str) -> None:
    """Copy screenshot `name` to docs/ when it is missing there, or when asked to refresh."""
    target = DOCS / name
    if not target.exists() or os.environ.get("MARIGOLD_UPDATE_SCREENSHOTS") == "1":
        DOCS.mkdir(exist_ok=True)
        shutil.copyfile(artifacts / name, target)


pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def planned_run(dagster_deployment: DagsterDeployment) -> str:
    """A finished, successful run of the flagship launched the Launchpad's way."""
    run_id = dagster_deployment.launch_run(JOB, run_config={})
    status = dagster_deployment.wait_for_run(run_id, timeout_s=480)
    assert status == "SUCCESS", (
        f"run {run_id} of {JOB} ended {status}\n{dagster_deployment.describe_run(run_id)}\n"
        f"{dagster_deployment.logs_tail()}"
    )
    return run_id


@pytest.fixture(scope="module")
def planned_steps(dagster_deployment: DagsterDeployment, planned_run: str) -> dict[str, str]:
    """Step key -> planned step id, for every planned step the run executed."""
    keys = {e.get("stepKey") for e in dagster_deployment.run_events(planned_run)}
    found = {key: m["id"] for key in keys if key and (m := PLANNED_STEP_KEY.match(key))}
    assert found, f"run {planned_run} executed no planned steps; its step keys: {sorted(keys)}"
    return found


def _shows(locator: Any, timeout_ms: int = 3000) -> bool:
    try:
        expect(locator).to_be_visible(timeout=timeout_ms)
    except AssertionError:
        return False
    return True


@contextmanager
def checking(page: Page, deployment: DagsterDeployment, artifacts: Path, name: str) -> Iterator:
    """Save a screenshot after the check, also when it fails; failures carry the server logs."""
    try:
        yield
    except (AssertionError, PlaywrightError) as error:
        page.screenshot(path=str(artifacts / f"FAILED_{name}.png"), full_page=True)
        raise AssertionError(
            f"{name}: {error}\n(page {page.url}; screenshot {artifacts}/FAILED_{name}.png)\n"
            f"{deployment.logs_tail()}"
        ) from error
    page.screenshot(path=str(artifacts / f"{name}.png"))


def test_run_page_lists_planned_steps(
    page: Page,
    dagster_deployment: DagsterDeployment,
    planned_run: str,
    planned_steps: dict[str, str],
    artifacts: Path,
):
    with checking(page, dagster_deployment, artifacts, "planned_run"):
        page.goto(f"{dagster_deployment.url}/runs/{planned_run}")
        expect(page.get_by_text("Success", exact=True).first).to_be_visible()
        plan_step = page.get_by_text(f"{PLANNING_STEP}__plan", exact=True).first
        if not _shows(plan_step):  # the "Succeeded" section of the step list starts collapsed
            page.get_by_text(re.compile(r"^Succeeded \(\d+\)$")).click()
        for key in [f"{PLANNING_STEP}__plan", *sorted(planned_steps)]:
            expect(page.get_by_text(key, exact=True).first).to_be_visible()
        shown = sorted(planned_steps)[len(planned_steps) // 2]
        page.get_by_text(shown, exact=True).first.click()
        expect(page.get_by_text("ASSET_MATERIALIZATION").first).to_be_visible()
        expect(page.get_by_text("marigold/created_by").first).to_be_visible()
    keep_for_readme(artifacts, "planned_run.png")


def test_planned_step_asset_shows_provenance(
    page: Page,
    dagster_deployment: DagsterDeployment,
    planned_run: str,
    planned_steps: dict[str, str],
    artifacts: Path,
):
    """Planned steps are partitions (by planned id) of one declared asset per planning step."""
    planned_id = sorted(planned_steps.values())[-1]
    path = "/".join([JOB, PLANNING_STEP, "planned"])
    with checking(page, dagster_deployment, artifacts, "planned_step_asset"):
        page.goto(f"{dagster_deployment.url}/assets/{path}?view=partitions&partition={planned_id}")
        for other in planned_steps.values():
            expect(page.get_by_text(other, exact=True).first).to_be_visible()
        expect(page.get_by_text(f"{len(planned_steps)} Partitions Selected")).to_be_visible()
        expect(page.get_by_text(planned_run[:8], exact=True).first).to_be_visible()
        for label in PROVENANCE:
            expect(page.get_by_text(label, exact=True).first).to_be_visible()
        expect(page.get_by_text("planning_step", exact=True).first).to_be_visible()
        expect(page.get_by_text(PLANNING_STEP, exact=True).first).to_be_visible()
    keep_for_readme(artifacts, "planned_step_asset.png")


def test_plan_asset_shows_lineage(
    page: Page, dagster_deployment: DagsterDeployment, planned_run: str, artifacts: Path
):
    plan = [JOB, PLANNING_STEP, "plan"]
    upstream, downstream = dagster_deployment.asset_lineage(plan)
    # The decision `route` materializes nothing, so it is not an asset: lineage passes through it.
    assert [JOB, "triage"] in upstream, f"plan's upstream is {upstream}"
    assert [JOB, PLANNING_STEP] in downstream, f"plan's downstream is {downstream}"
    with checking(page, dagster_deployment, artifacts, "plan_lineage"):
        page.goto(f"{dagster_deployment.url}/assets/{'/'.join(plan)}?view=lineage")
        graph = page.locator("svg foreignObject")
        for node in ("triage", "plan", "planned", PLANNING_STEP):
            expect(graph.get_by_text(node, exact=True).first).to_be_visible()

"""The agent story every transport is tested with, written as an agent would drive the tools.

Discover the templates, check a new template's text, launch a gated run (preview, then confirm),
follow it to its paused gate, approve it, read the result and the lineage, then launch a child
task under the first and find it in the lineage. Write tools refuse without confirmation.
"""

from __future__ import annotations

from dataclasses import dataclass

from mcp import Client

from tests.marigold_dagster.mcp.conftest import call, call_failing

IDENTITY = "cfo"  # one of contract_signoff's approvers

NEW_TEMPLATE = """\
name: big_contracts
version: 1
inputs:
  contracts: {kind: table, default: data/contracts.csv}
budget: {max_steps: 5, max_tokens: 100, max_cost_usd: 1, max_fanout: 2}
steps:
  - {name: read, uses: acquire.read_table, with: {input: contracts}}
  - name: large
    depends_on: [read]
    uses: transform.filter
    with: {where: "annual_value_usd > 250000"}
"""


@dataclass(frozen=True)
class Story:
    run_id: str  # the run that paused at the gate
    resumed_run_id: str  # the run the approval resumed it as
    task: str  # their correlation id
    child_run_id: str
    child_task: str


async def confirmed(client: Client, tool: str, arguments: dict) -> dict:
    """Preview a write tool, then call it again with the preview's token; what it did."""
    preview = await call(client, tool, arguments)
    assert preview["done"] is None and preview["preview"]["effects"], preview
    done = await call(
        client, tool, {**arguments, "confirm_token": preview["preview"]["confirm_token"]}
    )
    assert done["preview"] is None
    return done["done"]


async def agent_story(client: Client) -> Story:
    # discover
    listing = await call(client, "list_templates")
    assert "contract_signoff" in [t["name"] for t in listing["templates"]]
    described = await call(client, "describe_template", {"name": "contract_signoff"})
    assert "sign_off" in described["mermaid"]
    assert [s["kind"] for s in described["steps"]].count("gate") == 1

    # check a new template's text before proposing it
    report = await call(client, "validate_template", {"text": NEW_TEMPLATE})
    assert report["valid"], report
    broken = NEW_TEMPLATE.replace("depends_on: [read]", "depends_on: [raed]")
    report = await call(client, "validate_template", {"text": broken})
    assert [(p["code"], p["line"]) for p in report["problems"]] == [("UNKNOWN_DEPENDENCY", 9)]

    # a write tool does nothing without a valid confirmation
    forged = await call_failing(
        client, "launch_template", {"template": "contract_signoff", "confirm_token": "9.x.y"}
    )
    assert forged["code"] == "CONFIRMATION_INVALID"

    # launch, and follow the run to its paused gate
    launched = await confirmed(client, "launch_template", {"template": "contract_signoff"})
    run = launched["run"]
    run_id, task = run["run_id"], run["correlation_id"]
    assert run["status"] == "FAILURE" and run["template"] == "contract_signoff"
    summary = await call(client, "get_run", {"run_id": run_id})
    assert summary["waiting_gates"] == ["sign_off"]
    steps = {s["name"]: s for s in summary["steps"]}
    assert steps["sign_off"]["status"] == "paused"
    assert steps["publish"]["detail"] == "waiting at gate 'sign_off'"
    gates = await call(client, "list_waiting_gates", {"template": "contract_signoff"})
    gate = next(g for g in gates["gates"] if g["run_id"] == run_id)
    assert gate["may_decide"] and gate["approvers"] == ["finance_lead", "cfo"]

    # approve as the server's identity; the run resumes from the gate
    decision = {"run_id": run_id, "step": "sign_off", "decision": "approve", "reason": "checked"}
    decided = await confirmed(client, "decide_gate", decision)
    assert decided["by"] == IDENTITY and decided["resumed_status"] == "SUCCESS"
    resumed = decided["resumed_run_id"]
    again = await call_failing(client, "decide_gate", decision)
    assert again["code"] == "GATE_DECISION"

    # read the result and the lineage
    exposure = await call(
        client, "get_step_result", {"run_id": resumed, "step": "exposure", "limit": 3}
    )
    assert "exposure_usd" in exposure["columns"] and len(exposure["records"]) == 3
    assert exposure["page"]["total"] == exposure["rows"]
    published = await call(client, "get_step_result", {"run_id": resumed, "step": "publish"})
    assert published["status"] == "succeeded"
    lineage = await call(client, "get_lineage", {"correlation_id": task})
    assert [r["run_id"] for r in lineage["tasks"][0]["runs"]] == [run_id, resumed]

    # a child task, chained by parent_correlation_id, shows in the parent's lineage
    child = await confirmed(
        client, "launch_template", {"template": "letters", "parent_correlation_id": task}
    )
    child_run = child["run"]
    assert child_run["parent_correlation_id"] == task
    lineage = await call(client, "get_lineage", {"correlation_id": child_run["correlation_id"]})
    assert lineage["root"] == task
    tasks = {t["correlation_id"]: t for t in lineage["tasks"]}
    assert tasks[child_run["correlation_id"]]["parent_correlation_id"] == task
    assert tasks[child_run["correlation_id"]]["depth"] == 1
    return Story(run_id, resumed, task, child_run["run_id"], child_run["correlation_id"])

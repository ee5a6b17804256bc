"""The read and write tiers through the SDK's client in memory, on a SQLite instance.

The agent story runs first; then every read and write tool the story does not use is called
on the runs it left (and on a planned run of contract_review).
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from mcp import Client

from marigold_dagster.mcp.server import build_server
from tests.marigold_dagster.mcp.conftest import call, call_failing, make_project, settings_for
from tests.marigold_dagster.mcp.story import IDENTITY, agent_story, confirmed

pytestmark = pytest.mark.slow


def test_every_read_and_write_tool_in_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)  # the project's dagster.yaml: SQLite
    project = make_project(tmp_path / "project")
    server = build_server(settings_for(project, identity=IDENTITY))
    outsider = build_server(settings_for(project, identity="mallory"))

    async def main() -> None:
        async with Client(server) as client:
            story = await agent_story(client)

            # list_runs: of a template, of a task, paged
            runs = await call(client, "list_runs", {"template": "contract_signoff", "limit": 1})
            assert [r["run_id"] for r in runs["runs"]] == [story.resumed_run_id]
            assert runs["page"]["next_offset"] == 1
            task = await call(client, "list_runs", {"correlation_id": story.task})
            assert [r["run_id"] for r in task["runs"]] == [story.run_id, story.resumed_run_id]
            assert " of 10 steps, " in task["runs"][1]["budget"]["text"]

            # dead letters of the child run, and reprocessing them as a grandchild task
            letters = await call(
                client, "list_dead_letters", {"run_id": story.child_run_id, "step": "screen"}
            )
            assert letters["total"] == 1 and letters["records"][0]["id"] == 3
            assert letters["records"][0]["_dead_letter_step"] == "screen"
            wrong = await call_failing(
                client, "list_dead_letters", {"run_id": story.child_run_id, "step": "load"}
            )
            assert wrong["code"] == "NOT_FOUND" and wrong["valid"] == ["screen"]
            again = await confirmed(
                client, "reprocess_dead_letters", {"run_id": story.child_run_id, "step": "screen"}
            )
            assert again["run"]["parent_correlation_id"] == story.child_task
            screen = next(s for s in again["steps"] if s["name"] == "screen")
            assert "1 rows: 0 processed, 1 dead-lettered" in screen["detail"]

            # resume a failed run: a second gated run, resumed with no decision, pauses again
            paused = await confirmed(client, "launch_template", {"template": "contract_signoff"})
            resumed = await confirmed(client, "resume_run", {"run_id": paused["run"]["run_id"]})
            assert resumed["parent_run_id"] == paused["run"]["run_id"]
            assert resumed["status"] == "FAILURE"
            done = await call_failing(client, "resume_run", {"run_id": story.resumed_run_id})
            assert done["code"] == "INVALID_ARGUMENT" and "SUCCESS" in done["message"]

            # someone who is not an approver may not decide it; an approver rejects it
            rejection = {
                "run_id": resumed["run_id"],
                "step": "sign_off",
                "decision": "reject",
                "reason": "too much exposure",
            }
            async with Client(outsider) as other:
                refused = await call_failing(other, "decide_gate", rejection)
            assert refused["code"] == "GATE_DECISION" and refused["valid"] == [
                "finance_lead",
                "cfo",
            ]
            rejected = await confirmed(client, "decide_gate", rejection)
            assert rejected["decision"] == "reject" and rejected["resumed_status"] == "SUCCESS"
            after = await call(client, "get_run", {"run_id": rejected["resumed_run_id"]})
            publish = next(s for s in after["steps"] if s["name"] == "publish")
            assert publish["status"] == "skipped" and "rejected by cfo" in publish["detail"]

            # a planned run: its plan, and a dry run of the same planning step
            review = await confirmed(client, "launch_template", {"template": "contract_review"})
            assert review["run"]["status"] == "SUCCESS"
            plan = await call(
                client, "get_plan", {"run_id": review["run"]["run_id"], "step": "deep_review"}
            )
            assert plan["status"] == "accepted" and plan["fragment_id"]
            assert plan["attempts"][-1]["accepted"] and plan["fragment"]["steps"]
            planned = {s["id"] for s in plan["fragment"]["steps"]}
            assert {p["id"] for p in plan["provenance"]} == planned
            assert all(
                p["metadata"]["marigold/created_by"] == "planning_step" for p in plan["provenance"]
            )
            not_planning = await call_failing(
                client, "get_plan", {"run_id": review["run"]["run_id"], "step": "route"}
            )
            assert not_planning["valid"] == ["deep_review"]
            dry = await confirmed(client, "dry_run_plan", {"template": "contract_review"})
            assert dry["accepted"] and dry["step"] == "deep_review" and dry["estimate"]

            unknown = await call_failing(client, "get_run", {"run_id": "no-such-run"})
            assert unknown["code"] == "NOT_FOUND"

            # a launch that does not wait: follow the task until its run ends
            started = await confirmed(
                client, "launch_template", {"template": "letters", "wait": False}
            )
            assert started["running"] and started["run"] is None
            statuses = []
            with anyio.fail_after(300):
                while not statuses or statuses[-1] not in ("SUCCESS", "FAILURE"):
                    await anyio.sleep(1)
                    answer = await client.call_tool(
                        "list_runs", {"correlation_id": started["correlation_id"]}
                    )
                    body = answer.structured_content or {}
                    if body.get("ok") and body["result"]["runs"]:
                        statuses.append(body["result"]["runs"][0]["status"])
            assert statuses[-1] == "SUCCESS"

    anyio.run(main)

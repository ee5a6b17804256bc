"""Fixtures for the MCP server: a project folder of its own, and calling tools through the SDK."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.types import CallToolResult

from marigold_dagster.mcp import ServerSettings
from marigold_dagster.records.principals import APPROVERS_ENV, os_user_principal

pytest.register_assert_rewrite("tests.marigold_dagster.mcp.story")

REPO = Path(__file__).resolve().parents[3]

LETTERS = """\
name: letters
version: 1
description: Screen items in chunks of two; rows that break the rule are set aside.
inputs:
  items: {kind: table, default: data/items.csv}
budget: {max_steps: 50, max_tokens: 1000, max_cost_usd: 1, max_fanout: 8}
steps:
  - {name: load, uses: acquire.read_table, with: {input: items}}
  - name: screen
    kind: batch
    depends_on: [load]
    batch: {size: 2, failure_strategy: isolate}
    uses: validate.rules
    with: {mode: fail, rules: [{name: not_three, check: "id != 3"}]}
"""


def make_project(folder: Path) -> Path:
    """A project like the repository's: definitions.py, dagster.yaml and three templates.

    `contract_signoff` (a gate) and `contract_review` (a planning step) are the repository's;
    `letters` dead-letters the row whose id is 3.
    """
    templates = folder / "templates"
    (templates / "data").mkdir(parents=True)
    shutil.copy(REPO / "definitions.py", folder / "definitions.py")
    for name in ("contract_signoff.yaml", "contract_review.yaml", "data/contracts.csv"):
        shutil.copy(REPO / "templates" / name, templates / name)
    (templates / "letters.yaml").write_text(LETTERS)
    rows = "\n".join(f"{i},row {i}" for i in range(6))
    (templates / "data" / "items.csv").write_text(f"id,text\n{rows}\n")
    (folder / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return folder


def settings_for(project: Path, tiers: str = "offline,read,write", **kwargs: Any) -> ServerSettings:
    return ServerSettings(
        templates_dir=project / "templates",
        definitions_file=project / "definitions.py",
        project_dir=project,
        tiers=frozenset(tiers.split(",")),
        **kwargs,
    )


@pytest.fixture(scope="session")
def mcp_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_project(tmp_path_factory.mktemp("mcp_project"))


async def call(client: Client, tool: str, arguments: dict[str, Any] | None = None) -> Any:
    """The `result` of a tool that must succeed."""
    answer = await client.call_tool(tool, arguments or {})
    body = answer.structured_content
    assert not answer.is_error and body is not None and body["ok"], (tool, body, answer.content)
    return body["result"]


async def call_failing(
    client: Client, tool: str, arguments: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The typed `error` of a tool call that must fail (and be flagged `isError`)."""
    answer: CallToolResult = await client.call_tool(tool, arguments or {})
    body = answer.structured_content
    assert answer.is_error and body is not None and not body["ok"], (tool, body)
    return body["error"]


@pytest.fixture(autouse=True)
def approvers_map(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """The deployment's approver map: the OS user running the server may act as the approvers
    of `contract_signoff` (finance_lead, cfo), so `--as cfo` decides as the CLI would."""
    me = os_user_principal().name
    path = tmp_path_factory.mktemp("approvers") / "approvers.yaml"
    path.write_text(f"finance_lead: {{users: [{me}]}}\ncfo: {{users: [{me}]}}\n")
    monkeypatch.setenv(APPROVERS_ENV, str(path))
    return path

"""The offline tier and the server's shape, through the SDK's own client in memory.

No Dagster instance is touched: templates and capabilities come from files and the catalog.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from click.testing import CliRunner
from mcp import Client

from grammar_ops import render_capability_tier, standard_catalog
from marigold_dagster.cli import main
from marigold_dagster.mcp.diagnostics import known_codes
from marigold_dagster.mcp.server import build_server
from marigold_dagster.mcp.settings import parse_tiers
from marigold_dagster.planning.prompt import planner_instructions
from tests.marigold_dagster.mcp.conftest import REPO, call, call_failing, settings_for

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


def with_client(project: Path, body: Callable[[Client], Awaitable[Any]], **kwargs: Any) -> Any:
    server = build_server(settings_for(project, **kwargs))

    async def main() -> Any:
        async with Client(server) as client:
            return await body(client)

    return anyio.run(main)


def test_default_tiers_serve_no_write_tool(mcp_project: Path):
    async def body(client: Client) -> set[str]:
        return {tool.name for tool in (await client.list_tools()).tools}

    names = with_client(mcp_project, body, tiers="offline,read")
    assert {"list_templates", "get_run", "list_waiting_gates"} <= names
    assert not names & {"launch_template", "decide_gate", "resume_run", "dry_run_plan"}


def test_every_tool_publishes_an_output_schema_and_its_tier(mcp_project: Path):
    async def body(client: Client) -> list[Any]:
        return list((await client.list_tools()).tools)

    tools = with_client(mcp_project, body)
    assert len(tools) == 19
    for tool in tools:
        assert tool.output_schema and "ok" in tool.output_schema["properties"], tool.name
        assert (tool.meta or {})["marigold/tier"] in {"offline", "read", "write"}
        assert tool.description


def test_list_and_describe_templates(mcp_project: Path):
    async def body(client: Client) -> tuple[Any, Any]:
        return (
            await call(client, "list_templates"),
            await call(client, "describe_template", {"name": "contract_review"}),
        )

    listing, described = with_client(mcp_project, body)
    names = [t["name"] for t in listing["templates"]]
    assert names == ["contract_review", "contract_signoff", "letters"]
    assert listing["templates"][0]["resource"] == "marigold://templates/contract_review.yaml"
    inputs = {i["name"]: i for i in described["inputs"]}
    assert inputs["contracts"]["columns"][:2] == ["contract_id", "counterparty"]
    steps = {s["name"]: s for s in described["steps"]}
    assert steps["triage"]["kind"] == "batch" and steps["triage"]["batch"]["size"] == 40
    assert steps["deep_review"]["planning"]["max_depth"] >= 1
    assert steps["route"]["branches"] == ["deep_review", "summary"]
    assert described["budget"]["max_steps"] > 0
    assert described["mermaid"].startswith("flowchart TD")
    assert "route -->|summary| summary" in described["mermaid"]


def test_unknown_template_is_a_typed_error_naming_the_valid_ones(mcp_project: Path):
    async def body(client: Client) -> Any:
        return await call_failing(client, "describe_template", {"name": "contract_reveiw"})

    error = with_client(mcp_project, body)
    assert error["code"] == "NOT_FOUND"
    assert error["valid"] == ["contract_review", "contract_signoff", "letters"]


def test_validate_template_text_gives_the_findings_of_marigold_validate(
    mcp_project: Path, tmp_path: Path
):
    broken = NEW_TEMPLATE.replace("transform.filter", "transform.filtr")

    async def body(client: Client) -> tuple[Any, Any]:
        return (
            await call(client, "validate_template", {"text": NEW_TEMPLATE}),
            await call(client, "validate_template", {"text": broken}),
        )

    good, bad = with_client(mcp_project, body)
    assert good == {"valid": True, "template": "big_contracts", "steps": 2, "problems": []}
    assert not bad["valid"]
    problem = bad["problems"][0]
    assert problem["code"] == "UNKNOWN_CAPABILITY" and problem["line"] == 10
    assert problem["field"] == "steps[1].uses"
    # the same finding as `marigold validate` on a folder holding that text
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "big_contracts.yaml").write_text(broken)
    printed = CliRunner().invoke(main, ["validate", str(folder)]).output
    assert f"big_contracts.yaml:10: steps[1].uses: {problem['message']}" in printed


def test_validate_template_checks_triggers_against_the_other_templates(mcp_project: Path):
    chained = NEW_TEMPLATE + "triggers: {after: {template: contract_reveiw}}\n"

    async def body(client: Client) -> Any:
        return await call(client, "validate_template", {"text": chained})

    report = with_client(mcp_project, body)
    assert [p["code"] for p in report["problems"]] == ["UNKNOWN_TEMPLATE"]


def test_capabilities_search_inspect_and_compose(mcp_project: Path):
    async def body(client: Client) -> tuple[Any, ...]:
        return (
            await call(client, "search_capabilities", {"query": "rows expression", "limit": 1}),
            await call(client, "inspect_capabilities", {"names": ["transform.filter"], "tier": 3}),
            await call(
                client,
                "validate_composition",
                {"uses": "transform.filter", "config": {"where": "x > 1"}, "input_kind": "table"},
            ),
            await call(
                client,
                "validate_composition",
                {"compose": [{"use": "emit.write_table", "with": {"name": "t"}}, {"use": "x.y"}]},
            ),
        )

    search, schema, good, bad = with_client(mcp_project, body)
    assert search["page"]["total"] > 1 and len(search["matches"]) == 1
    assert search["page"]["next_offset"] == 1
    expected = render_capability_tier(standard_catalog(), 3, ["transform.filter"])
    assert schema["text"] == expected.text and schema["tokens"] == expected.tokens
    assert good["valid"] and good["output_kind"] == "table" and good["side_effect"] is False
    assert not bad["valid"] and "UNKNOWN_PRIMITIVE" in {p["code"] for p in bad["problems"]}


def test_explain_codes(mcp_project: Path):
    async def body(client: Client) -> tuple[Any, Any]:
        return (
            await call(client, "explain_codes", {"codes": ["TOO_DEEP", "NOPE"]}),
            await call(client, "explain_codes"),
        )

    some, every = with_client(mcp_project, body)
    assert some["codes"][0]["code"] == "TOO_DEEP" and some["unknown"] == ["NOPE"]
    assert len(every["codes"]) == len(known_codes())


VALIDATORS = [
    "grammar_ops/composition.py",
    "grammar_ops/capability_schema.py",
    "grammar_ops/catalog.py",
    "marigold_dagster/template/loader.py",
    "marigold_dagster/template/frame.py",
    "marigold_dagster/planning/validation.py",
    "marigold_dagster/planning/planner.py",
    "marigold_dagster/template/trigger_checks.py",
]


def test_every_code_the_validators_emit_is_explained():
    emitted = {
        code
        for path in VALIDATORS
        for code in re.findall(r'"([A-Z][A-Z_]{3,})"', (REPO / path).read_text())
    }
    assert len(emitted) > 50
    assert emitted - set(known_codes()) == set()


def test_write_tools_preview_and_refuse_without_a_valid_token(mcp_project: Path):
    async def body(client: Client) -> tuple[Any, ...]:
        preview = await call(client, "launch_template", {"template": "contract_signoff"})
        token = preview["preview"]["confirm_token"]
        other = await call_failing(
            client, "launch_template", {"template": "letters", "confirm_token": token}
        )
        forged = await call_failing(
            client, "launch_template", {"template": "contract_signoff", "confirm_token": "1.a.b"}
        )
        unknown_input = await call_failing(
            client, "launch_template", {"template": "letters", "inputs": {"nope": "x.csv"}}
        )
        no_identity = await call_failing(
            client,
            "decide_gate",
            {"run_id": "r", "step": "sign_off", "decision": "approve", "reason": "ok"},
        )
        return preview, other, forged, unknown_input, no_identity

    preview, other, forged, unknown_input, no_identity = with_client(mcp_project, body)
    assert preview["done"] is None and preview["preview"]["action"] == "launch_template"
    assert any("contract_signoff" in effect for effect in preview["preview"]["effects"])
    assert other["code"] == forged["code"] == "CONFIRMATION_INVALID"
    assert unknown_input["code"] == "PLATFORM_ERROR" and "nope" in unknown_input["message"]
    assert no_identity["code"] == "INVALID_ARGUMENT" and "--as" in no_identity["message"]
    assert not (mcp_project / "storage").exists()  # nothing ran


def test_bad_arguments_and_unknown_tools_are_typed_errors_too(mcp_project: Path):
    async def body(client: Client) -> tuple[Any, ...]:
        return (
            await call_failing(client, "list_runs", {"limit": "many"}),
            await call_failing(client, "describe_template", {}),
            await call_failing(client, "launch_template", {"template": "letters"}),
        )

    bad_limit, missing, write_off = with_client(mcp_project, body, tiers="offline,read")
    assert bad_limit["code"] == "INVALID_ARGUMENT"
    assert [(p["code"], p["field"]) for p in bad_limit["problems"]] == [("INT_PARSING", "limit")]
    assert [(p["code"], p["field"]) for p in missing["problems"]] == [("MISSING", "name")]
    assert write_off["code"] == "NOT_FOUND" and "launch_template" not in write_off["valid"]
    assert "list_runs" in write_off["valid"]


def test_resources(mcp_project: Path):
    async def body(client: Client) -> tuple[str, ...]:
        texts = []
        for uri in (
            "marigold://capabilities/tier/1",
            "marigold://templates/letters.yaml",
            "marigold://templates/letters/description",
            "marigold://planner/instructions",
        ):
            contents = (await client.read_resource(uri)).contents[0]
            texts.append(getattr(contents, "text", ""))
        return tuple(texts)

    tier1, yaml_text, description, instructions = with_client(mcp_project, body)
    assert tier1 == render_capability_tier(standard_catalog(), 1).text
    assert yaml_text == (mcp_project / "templates/letters.yaml").read_text()
    assert '"mermaid"' in description
    assert instructions == planner_instructions()


def test_list_tools_prints_each_tool_with_its_tier_and_the_token_size():
    result = CliRunner().invoke(main, ["mcp", "--list-tools"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(re.match(r"^write\s+launch_template\s", line) for line in lines)
    assert "19 tools (offline 7, read 7, write 5)" in result.output
    assert "tokens" in lines[-1]


def test_tiers_flag():
    assert parse_tiers("offline") == {"offline"}
    assert parse_tiers("all") == {"offline", "read", "write"}
    with pytest.raises(ValueError, match="choose from offline, read, write"):
        parse_tiers("offline,admin")


def test_the_readme_lists_every_tool_with_its_tier(mcp_project: Path):
    async def body(client: Client) -> dict[str, str]:
        tools = (await client.list_tools()).tools
        return {tool.name: (tool.meta or {})["marigold/tier"] for tool in tools}

    served = with_client(mcp_project, body)
    readme = (REPO / "README.md").read_text()
    listed = dict(re.findall(r"^\| `(\w+)` \[(offline|read|write)\] \|", readme, flags=re.M))
    assert listed == served

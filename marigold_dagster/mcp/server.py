"""The MCP server: the platform's operations as tools in tiers, and what agents read as resources.

The tools have no logic of their own: each calls one operation of `offline`, `read` or `write`,
which call the functions the CLI calls. Every tool answers an `Outcome` (published as its output
schema); a failed one is also flagged `isError`. Write tools preview first and act only when
called again with the same arguments and the preview's `confirm_token`.

    >>> server = build_server(ServerSettings(tiers=frozenset({"offline"})))
    >>> async with Client(server) as client:  # mcp.Client, in memory
    ...     result = await client.call_tool("list_templates", {})
"""

from __future__ import annotations

import functools
import inspect
import json
import re
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field

from marigold_dagster.mcp import offline, read, write
from marigold_dagster.mcp.confirmations import Confirmations
from marigold_dagster.mcp.failures import attempt
from marigold_dagster.mcp.models import (
    CapabilitySchema,
    CapabilitySearch,
    CodeList,
    CompositionReport,
    DeadLetters,
    DryRunResult,
    GateDecisionResult,
    LaunchResult,
    LineageResult,
    Outcome,
    PlanResult,
    Preview,
    Problem,
    ResumeResult,
    RunList,
    RunSummaryResult,
    StepResult,
    TemplateDescription,
    TemplateList,
    ToolFailure,
    ValidationReport,
    WaitingGates,
    WriteResult,
)
from marigold_dagster.mcp.settings import ServerSettings
from marigold_dagster.planning.prompt import planner_instructions

TIER_META = "marigold/tier"
INSTRUCTIONS = """\
Marigold runs YAML workflow templates as Dagster jobs; planning steps are filled by a planner
model within bounds. Discover with list_templates / describe_template / search_capabilities;
check YAML with validate_template before proposing it. Runs are grouped into tasks by
correlation_id; pass parent_correlation_id to launch a sub-task, and get_lineage shows the tree.
Write tools answer a preview with confirm_token first; call again with the same arguments and
that token to act. Every result is {ok, result | error{code, message, valid, problems}};
explain_codes says what a code means.
"""

READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)
WRITES = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)

Offset = Annotated[int, Field(0, ge=0, description="Page start.")]
Limit = Annotated[int, Field(20, ge=1, le=200, description="Page size.")]
RunId = Annotated[str, Field(description="A Dagster run id.")]
Token = Annotated[
    str | None, Field(None, description="From this tool's preview; omit to get a preview.")
]
Inputs = Annotated[
    dict[str, str] | None, Field(None, description="Input name -> file path; default: template's.")
]


def _register(server: MCPServer, tier: str, annotations: ToolAnnotations) -> Callable[..., Any]:
    """Register a tool of `tier` whose body returns an `Outcome`; a failed one sets `isError`."""

    def decorate(fn: Callable[..., Outcome[Any]]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def call(**arguments: Any) -> Any:
            outcome = fn(**arguments)
            payload = outcome.model_dump(mode="json")
            if outcome.ok:
                return payload
            return CallToolResult(
                content=[TextContent(type="text", text=json.dumps(payload))],
                structured_content=payload,
                is_error=True,
            )

        call.__signature__ = inspect.signature(fn, eval_str=True)  # type: ignore[attr-defined]
        server.add_tool(
            call,
            name=fn.__name__,
            description=inspect.cleandoc(fn.__doc__ or ""),
            annotations=annotations,
            meta={TIER_META: tier},
            structured_output=True,
        )
        return fn

    return decorate


def build_server(settings: ServerSettings) -> MCPServer:
    """An MCP server serving `settings.tiers` of tools over `settings`' project."""
    server: MCPServer = MCPServer(
        "marigold",
        instructions=INSTRUCTIONS,
        version="0.1.0",
        warn_on_duplicate_tools=False,
        log_level="WARNING",
    )
    if "offline" in settings.tiers:
        _offline_tools(server, settings)
    if "read" in settings.tiers:
        _read_tools(server, settings)
    if "write" in settings.tiers:
        _write_tools(server, settings, Confirmations(settings.confirm_ttl_s))
    _resources(server, settings)
    server.middleware.append(typed_tool_errors(server))  # type: ignore[arg-type]
    return server


_ARGUMENT_ERROR = re.compile(r"^(\S[^\n]*)\n  ([^\n]+?) \[type=(\w+)", re.MULTILINE)


def typed_tool_errors(server: MCPServer) -> Callable[[Any, Any], Awaitable[Any]]:
    """Middleware giving the SDK's own tool errors (bad arguments, unknown tool) the typed
    `Outcome` shape every tool answers with."""

    async def middleware(ctx: Any, call_next: Any) -> Any:
        result = await call_next(ctx)
        if ctx.method != "tools/call" or not isinstance(result, dict):
            return result  # the SDK hands middleware the result in its wire form
        if not result.get("isError") or result.get("structuredContent") is not None:
            return result
        text = " ".join(c.get("text", "") for c in result.get("content") or [])
        if text.startswith("Unknown tool"):
            tools = sorted(tool.name for tool in await server.list_tools())
            failure = ToolFailure(code="NOT_FOUND", message=text, valid=tools)
        elif "validation error" in text:
            problems = [
                Problem(code=kind.upper(), field=field, message=message)
                for field, message, kind in _ARGUMENT_ERROR.findall(text)
            ]
            failure = ToolFailure(code="INVALID_ARGUMENT", message=text, problems=problems)
        else:
            failure = ToolFailure(code="INTERNAL_ERROR", message=text)
        payload = Outcome[Any](ok=False, error=failure).model_dump(mode="json")
        return {**result, "structuredContent": payload}

    return middleware


def _offline_tools(server: MCPServer, settings: ServerSettings) -> None:
    tool = _register(server, "offline", READ_ONLY)

    @tool
    def list_templates() -> Outcome[TemplateList]:
        """List the workflow templates: name, version, description, step kinds, inputs."""
        return attempt(lambda: offline.list_templates(settings))

    @tool
    def describe_template(name: str) -> Outcome[TemplateDescription]:
        """A template's steps and kinds, inputs with columns, budget, planning bounds, and
        its frame as a Mermaid graph."""
        return attempt(lambda: offline.describe_template(settings, name))

    @tool
    def validate_template(
        text: Annotated[str, Field(description="Template YAML.")],
        file_name: Annotated[
            str | None, Field(None, description="As if saved as this; default <name>.yaml.")
        ] = None,
    ) -> Outcome[ValidationReport]:
        """Check template YAML text as `marigold validate` does (nothing is saved): every
        problem with its code, field path and line."""
        return attempt(lambda: offline.validate_template(settings, text, file_name))

    @tool
    def search_capabilities(
        query: Annotated[str, Field(description="Words in the name or summary; '' for all.")],
        offset: Offset = 0,
        limit: Limit = 20,
    ) -> Outcome[CapabilitySearch]:
        """Find capabilities (primitives and patterns) a step or planner may use."""
        return attempt(lambda: offline.search_capabilities(settings, query, offset, limit))

    @tool
    def inspect_capabilities(
        names: Annotated[list[str] | None, Field(None, description="Default: all.")] = None,
        tier: Annotated[
            int, Field(2, ge=1, le=3, description="1 summaries, 2 contracts, 3 config schemas.")
        ] = 2,
    ) -> Outcome[CapabilitySchema]:
        """The capability schema of a tier for some capabilities, with its size in tokens."""
        return attempt(lambda: offline.inspect_capabilities(settings, names, tier))

    @tool
    def validate_composition(
        uses: Annotated[str | None, Field(None, description="A capability name...")] = None,
        config: Annotated[
            dict[str, Any] | None, Field(None, description="...and its `with:` config.")
        ] = None,
        compose: Annotated[
            list[dict[str, Any]] | None,
            Field(None, description="Or inline entries [{use, with}]."),
        ] = None,
        input_kind: Annotated[
            str | None, Field(None, description="table, records, documents, json...")
        ] = None,
    ) -> Outcome[CompositionReport]:
        """Check a capability use or an inline composition as a template step would."""
        return attempt(
            lambda: offline.validate_composition(settings, uses, config, compose, input_kind)
        )

    @tool
    def explain_codes(
        codes: Annotated[list[str] | None, Field(None, description="Default: all.")] = None,
    ) -> Outcome[CodeList]:
        """What diagnostic and error codes mean and how to fix them."""
        return attempt(lambda: offline.explain_codes(codes))


def _read_tools(server: MCPServer, settings: ServerSettings) -> None:
    tool = _register(server, "read", READ_ONLY)

    @tool
    def list_runs(
        template: Annotated[str | None, Field(None, description="Only this template.")] = None,
        correlation_id: Annotated[
            str | None, Field(None, description="Only this task's runs.")
        ] = None,
        offset: Offset = 0,
        limit: Limit = 20,
    ) -> Outcome[RunList]:
        """Recent runs (newest first) or one task's runs: status, steps, budget use, task ids."""
        return attempt(lambda: read.list_runs(settings, template, correlation_id, offset, limit))

    @tool
    def get_run(run_id: RunId) -> Outcome[RunSummaryResult]:
        """A run's summary: every template step's status and cause, budget, correlation ids."""
        return attempt(lambda: read.get_run(settings, run_id))

    @tool
    def get_step_result(
        run_id: RunId, step: str, offset: Offset = 0, limit: Limit = 20
    ) -> Outcome[StepResult]:
        """A step's result: preview, its Parquet file, and a page of its rows."""
        return attempt(lambda: read.get_step_result(settings, run_id, step, offset, limit))

    @tool
    def get_plan(
        run_id: RunId,
        step: Annotated[str, Field(description="A planning step.")],
        phase: Annotated[int, Field(1, ge=1)] = 1,
    ) -> Outcome[PlanResult]:
        """A planning step's plan: fragment, every attempt with its diagnostics, provenance."""
        return attempt(lambda: read.get_plan(settings, run_id, step, phase))

    @tool
    def get_lineage(
        correlation_id: Annotated[str, Field(description="A task id (or a run id).")],
    ) -> Outcome[LineageResult]:
        """The tree of tasks around a correlation id: parents, children, their runs and use."""
        return attempt(lambda: read.get_lineage(settings, correlation_id))

    @tool
    def list_dead_letters(
        run_id: RunId,
        step: Annotated[str, Field(description="A batch step.")],
        offset: Offset = 0,
        limit: Limit = 20,
    ) -> Outcome[DeadLetters]:
        """Rows a batch step set aside, with error, attempts and the model's last answer."""
        return attempt(lambda: read.list_dead_letters(settings, run_id, step, offset, limit))

    @tool
    def list_waiting_gates(
        template: Annotated[str | None, Field(None, description="Only this template.")] = None,
    ) -> Outcome[WaitingGates]:
        """Paused runs whose gate waits for a decision, and whether this server may decide."""
        return attempt(lambda: read.list_waiting_gates(settings, template))


def _write_tools(server: MCPServer, settings: ServerSettings, tokens: Confirmations) -> None:
    tool = _register(server, "write", WRITES)

    def confirmable(
        name: str,
        arguments: dict[str, Any],
        token: str | None,
        preview: Callable[[], list[str]],
        act: Callable[[], Any],
    ) -> Any:
        if token is None:
            effects = preview()
            issued, expires = tokens.issue(name, arguments)
            return WriteResult[Any](
                preview=Preview(
                    action=name, effects=effects, confirm_token=issued, expires_at=expires
                )
            )
        tokens.redeem(token, name, arguments)
        return WriteResult[Any](done=act())

    @tool
    def launch_template(
        template: str,
        inputs: Inputs = None,
        parent_correlation_id: Annotated[
            str | None, Field(None, description="Chain under this task.")
        ] = None,
        wait: Annotated[
            bool, Field(True, description="False: answer at once; follow with list_runs.")
        ] = True,
        confirm_token: Token = None,
    ) -> Outcome[WriteResult[LaunchResult]]:
        """Run a template (to its end or first gate) as a new task; returns its run summary."""
        given = inputs or {}
        parent = parent_correlation_id
        args = {"template": template, "inputs": given, "parent": parent, "wait": wait}
        return attempt(
            lambda: confirmable(
                "launch_template",
                args,
                confirm_token,
                lambda: write.preview_launch(settings, template, given, parent, wait),
                lambda: write.do_launch(settings, template, given, parent, wait),
            )
        )

    @tool
    def dry_run_plan(
        template: str,
        step: Annotated[
            str | None, Field(None, description="Default: first planning step.")
        ] = None,
        inputs: Inputs = None,
        confirm_token: Token = None,
    ) -> Outcome[WriteResult[DryRunResult]]:
        """Ask the planner for a planning step's plan and validate it, executing nothing."""
        given = inputs or {}
        args = {"template": template, "step": step, "inputs": given}
        return attempt(
            lambda: confirmable(
                "dry_run_plan",
                args,
                confirm_token,
                lambda: write.preview_dry_run(settings, template, step, given),
                lambda: write.do_dry_run(settings, template, step, given),
            )
        )

    @tool
    def decide_gate(
        run_id: RunId,
        step: Annotated[str, Field(description="The gate step.")],
        decision: Literal["approve", "reject"],
        reason: Annotated[str, Field(description="Why; kept for audit.")],
        confirm_token: Token = None,
    ) -> Outcome[WriteResult[GateDecisionResult]]:
        """Approve or reject a paused gate as this server's identity, then resume the run."""
        args = {"run_id": run_id, "step": step, "decision": decision, "reason": reason}
        return attempt(
            lambda: confirmable(
                "decide_gate",
                args,
                confirm_token,
                lambda: write.preview_decision(settings, run_id, step, decision, reason),
                lambda: write.do_decision(settings, run_id, step, decision, reason),
            )
        )

    @tool
    def resume_run(
        run_id: RunId, confirm_token: Token = None
    ) -> Outcome[WriteResult[ResumeResult]]:
        """Re-execute a failed run from failure; steps that succeeded are not run again."""
        return attempt(
            lambda: confirmable(
                "resume_run",
                {"run_id": run_id},
                confirm_token,
                lambda: write.preview_resume(settings, run_id),
                lambda: write.do_resume(settings, run_id),
            )
        )

    @tool
    def reprocess_dead_letters(
        run_id: RunId,
        step: Annotated[str, Field(description="The batch step.")],
        input: Annotated[
            str | None, Field(None, description="Input the rows replace; default: the table one.")
        ] = None,
        confirm_token: Token = None,
    ) -> Outcome[WriteResult[LaunchResult]]:
        """Run the template again on a batch step's dead letters, as a child task."""
        args = {"run_id": run_id, "step": step, "input": input}
        return attempt(
            lambda: confirmable(
                "reprocess_dead_letters",
                args,
                confirm_token,
                lambda: write.preview_reprocess(settings, run_id, step, input),
                lambda: write.do_reprocess(settings, run_id, step, input),
            )
        )


def _resources(server: MCPServer, settings: ServerSettings) -> None:
    @server.resource(
        "marigold://capabilities/tier/{tier}",
        mime_type="text/plain",
        description="The capability catalog at tier 1, 2 or 3.",
    )
    def capability_tier(tier: str) -> str:
        return offline.inspect_capabilities(settings, None, int(tier)).text

    @server.resource(
        "marigold://templates/{name}.yaml",
        mime_type="application/yaml",
        description="A template's YAML.",
    )
    def template_yaml(name: str) -> str:
        return offline.frame_of(settings, name).path.read_text("utf-8")

    @server.resource(
        "marigold://templates/{name}/description",
        mime_type="application/json",
        description="A template described: steps, inputs, budget, Mermaid graph.",
    )
    def template_description(name: str) -> str:
        return offline.describe_template(settings, name).model_dump_json(indent=1)

    @server.resource(
        "marigold://planner/instructions",
        mime_type="text/markdown",
        description="The instructions the planner prompt starts with.",
    )
    def planner_prompt() -> str:
        return planner_instructions()

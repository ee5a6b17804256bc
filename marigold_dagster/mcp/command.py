"""The `marigold mcp` command: serve the platform to agents over stdio or streamable HTTP.

marigold mcp                                   # stdio, offline + read tools
marigold mcp --tiers all --as finance_lead     # write tools too, deciding gates as finance_lead
MARIGOLD_MCP_TOKEN=... marigold mcp --transport http --host 0.0.0.0 --port 8765
marigold mcp --list-tools                      # every tool with its tier and token size
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from grammar_ops import count_tokens
from marigold_dagster.mcp.http import DEFAULT_HOST, DEFAULT_PORT
from marigold_dagster.mcp.settings import TIERS, ServerSettings, parse_tiers

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

# The MCP SDK is imported when the command runs, not when `marigold` starts.

TOKEN_ENV = "MARIGOLD_MCP_TOKEN"


@dataclass(frozen=True)
class ToolListing:
    """The tools a server serves: (tier, name, description) and the size an agent loads."""

    tools: list[tuple[str, str, str]]
    description_tokens: int  # names and descriptions
    input_tokens: int  # the tools/list answer without output schemas
    listing_tokens: int  # the whole tools/list answer

    def per_tier(self) -> dict[str, int]:
        counts = dict.fromkeys(TIERS, 0)
        for tier, _, _ in self.tools:
            counts[tier] = counts.get(tier, 0) + 1
        return counts


def tool_listing(server: MCPServer) -> ToolListing:
    """Each tool with its tier; tokens of the descriptions, and of the whole tools/list answer."""
    from marigold_dagster.mcp.server import TIER_META

    tools = asyncio.run(server.list_tools())
    rows = [
        (str((tool.meta or {}).get(TIER_META, "?")), tool.name, tool.description or "")
        for tool in tools
    ]
    dumped = [tool.model_dump(mode="json", by_alias=True, exclude_none=True) for tool in tools]
    inputs = [{k: v for k, v in tool.items() if k != "outputSchema"} for tool in dumped]
    descriptions = "\n".join(f"{name}: {text}" for _, name, text in rows)
    return ToolListing(
        rows,
        count_tokens(descriptions),
        count_tokens(json.dumps(inputs)),
        count_tokens(json.dumps(dumped)),
    )


@click.command("mcp")
@click.option(
    "--transport", type=click.Choice(["stdio", "http"]), default="stdio", show_default=True
)
@click.option("--host", default=DEFAULT_HOST, show_default=True, help="HTTP: address to bind.")
@click.option("--port", type=int, default=DEFAULT_PORT, show_default=True, help="HTTP: port.")
@click.option(
    "--tiers",
    default="offline,read",
    show_default=True,
    help=f"Comma-separated tiers to serve ({', '.join(TIERS)}), or 'all'.",
)
@click.option("--as", "identity", default=None, help="Who this server decides gates as.")
@click.option(
    "--templates-dir",
    type=click.Path(path_type=Path),
    default=Path("templates"),
    show_default=True,
)
@click.option(
    "--definitions",
    "definitions_file",
    type=click.Path(path_type=Path),
    default=Path("definitions.py"),
    show_default=True,
    help="The project's definitions file (to resume runs).",
)
@click.option("--list-tools", is_flag=True, help="Print each tool with its tier, then exit.")
def mcp_command(
    transport: str,
    host: str,
    port: int,
    tiers: str,
    identity: str | None,
    templates_dir: Path,
    definitions_file: Path,
    list_tools: bool,
) -> None:
    """Serve templates, runs and gates to agents over MCP (stdio, or streamable HTTP).

    Over HTTP the server is stateless and bound to 127.0.0.1 unless --host says otherwise; bound
    elsewhere it requires the bearer token in $MARIGOLD_MCP_TOKEN (used whenever it is set).
    """
    try:
        chosen = frozenset(TIERS) if list_tools else parse_tiers(tiers)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--tiers") from None
    from marigold_dagster.mcp.http import serve_http
    from marigold_dagster.mcp.server import build_server

    settings = ServerSettings(
        templates_dir=templates_dir.resolve(),
        definitions_file=definitions_file.resolve(),
        project_dir=Path.cwd(),
        identity=identity,
        tiers=chosen,
    )
    server = build_server(settings)
    if list_tools:
        _print_listing(tool_listing(server))
        return
    if transport == "stdio":
        server.run("stdio")
        return
    try:
        serve_http(server, host=host, port=port, token=os.environ.get(TOKEN_ENV) or None)
    except ValueError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(1)


def _print_listing(listing: ToolListing) -> None:
    for tier, name, description in listing.tools:
        first = description.splitlines()[0] if description else ""
        click.echo(f"{tier:<8} {name:<24} {first}")
    counts = ", ".join(f"{tier} {n}" for tier, n in listing.per_tier().items())
    click.echo(
        f"\n{len(listing.tools)} tools ({counts}); tokens (cl100k): names and descriptions "
        f"{listing.description_tokens:,}, with input schemas {listing.input_tokens:,}, "
        f"whole tools/list with output schemas {listing.listing_tokens:,}"
    )

"""The MCP server: the platform's operations as tools an agent can discover and call.

`server` builds the server (tools in tiers: `offline`, `read`, `write`; resources), whose tools
call `offline`, `read` and `write`, which call the same functions as the CLI. `models` holds the
typed results, `failures` turns errors into them, `confirmations` the preview-then-confirm
tokens of write tools, `diagnostics` explains codes, `http` serves it over streamable HTTP, and
`command` is `marigold mcp`.

Importing this package does not import the MCP SDK (the `marigold` command line starts without
it); `marigold_dagster.mcp.server.build_server` and `marigold_dagster.mcp.http.http_app` do.
"""

from marigold_dagster.mcp.command import mcp_command, tool_listing
from marigold_dagster.mcp.settings import ServerSettings

__all__ = [
    "ServerSettings",
    "mcp_command",
    "tool_listing",
]

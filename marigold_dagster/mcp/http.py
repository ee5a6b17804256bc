"""Serving the MCP server over streamable HTTP: stateless, and behind a bearer token when asked.

Bound to 127.0.0.1 by default; a server bound anywhere else must be given a token, and then
every request must carry `Authorization: Bearer <token>` (compared in constant time).
"""

from __future__ import annotations

import hmac
import ipaddress
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer
    from starlette.types import ASGIApp, Receive, Scope, Send

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
PATH = "/mcp"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class BearerGate:
    """ASGI middleware refusing HTTP requests without the right bearer token (401)."""

    def __init__(self, app: ASGIApp, token: str):
        if not token:
            raise ValueError("a bearer token must not be empty")
        self.app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, self._expected):
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"www-authenticate", b'Bearer realm="marigold"'),
                        ],
                    }
                )
                body = b'{"error": "unauthorized: send Authorization: Bearer <token>"}'
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def http_app(server: MCPServer, *, host: str = DEFAULT_HOST, token: str | None = None) -> ASGIApp:
    """The server as a stateless streamable-HTTP ASGI app at `/mcp`.

    Raises:
        ValueError: `host` is not a loopback address and no token is given.
    """
    if not is_loopback(host) and not token:
        raise ValueError(
            f"refusing to serve on {host} without a bearer token: set MARIGOLD_MCP_TOKEN "
            f"(or bind to {DEFAULT_HOST})"
        )
    app: ASGIApp = server.streamable_http_app(
        streamable_http_path=PATH, stateless_http=True, host=host
    )
    return BearerGate(app, token) if token else app


def serve_http(
    server: MCPServer, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, token: str | None
) -> None:
    """Serve until interrupted (uvicorn)."""
    import uvicorn

    uvicorn.run(http_app(server, host=host, token=token), host=host, port=port, log_level="warning")

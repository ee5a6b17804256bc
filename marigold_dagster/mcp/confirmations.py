"""Confirmation tokens: a write tool previews first and acts only when called back with its token.

A token is signed (HMAC-SHA256 with a key made when the server starts) over the tool's name, its
arguments and an expiry, so it is good for exactly that call, on this server process, until it
expires; the server keeps no state per preview (stateless HTTP serves it), only the tokens
already spent, so none is used twice.

    >>> confirmations = Confirmations(ttl_s=600)
    >>> token, _ = confirmations.issue("resume_run", {"run_id": "r1"})
    >>> confirmations.redeem(token, "resume_run", {"run_id": "r1"})
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Mapping
from typing import Any

from marigold_dagster.mcp.failures import ToolProblem


class Confirmations:
    """Issues and redeems the tokens of one server process."""

    def __init__(self, ttl_s: float = 600.0, key: bytes | None = None):
        self._key = key or secrets.token_bytes(32)
        self._ttl_s = ttl_s
        self._spent: set[str] = set()
        self._lock = threading.Lock()

    def issue(self, tool: str, arguments: Mapping[str, Any]) -> tuple[str, float]:
        """A token for calling `tool` with `arguments`, and when it expires (epoch seconds)."""
        expires = time.time() + self._ttl_s
        nonce = secrets.token_hex(8)
        body = f"{expires:.0f}.{nonce}"
        return f"{body}.{self._sign(tool, arguments, body)}", float(f"{expires:.0f}")

    def redeem(self, token: str, tool: str, arguments: Mapping[str, Any]) -> None:
        """Accept `token` for this call once.

        Raises:
            ToolProblem: CONFIRMATION_INVALID when the token is malformed, for another tool or
                other arguments, expired, or already used.
        """
        expires, _, rest = token.partition(".")
        nonce, _, signature = rest.partition(".")
        expected = self._sign(tool, arguments, f"{expires}.{nonce}")
        if not (expires.isdigit() and nonce and hmac.compare_digest(signature, expected)):
            raise ToolProblem(
                "CONFIRMATION_INVALID",
                f"this confirm_token was not issued by this server for {tool} with these "
                "arguments; call it without confirm_token to preview and get one",
            )
        if time.time() > int(expires):
            raise ToolProblem(
                "CONFIRMATION_INVALID",
                "this confirm_token has expired; call again without it for a new preview",
            )
        with self._lock:
            if signature in self._spent:
                raise ToolProblem(
                    "CONFIRMATION_INVALID",
                    "this confirm_token was already used; preview again to act again",
                )
            self._spent.add(signature)

    def _sign(self, tool: str, arguments: Mapping[str, Any], body: str) -> str:
        canonical = json.dumps(
            {"tool": tool, "arguments": arguments, "body": body}, sort_keys=True, default=str
        )
        digest = hmac.new(self._key, canonical.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

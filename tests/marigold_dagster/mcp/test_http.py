"""Serving over HTTP: loopback by default, a bearer token required anywhere else."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from marigold_dagster.cli import main
from marigold_dagster.mcp.http import BearerGate, http_app, is_loopback
from marigold_dagster.mcp.server import build_server
from tests.marigold_dagster.mcp.conftest import settings_for


def test_loopback_addresses():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.5")


def test_binding_elsewhere_needs_a_token(mcp_project: Path):
    server = build_server(settings_for(mcp_project, tiers="offline"))
    with pytest.raises(ValueError, match="without a bearer token"):
        http_app(server, host="0.0.0.0")
    assert isinstance(http_app(server, host="0.0.0.0", token="t0ken"), BearerGate)


def test_the_command_refuses_to_bind_elsewhere_without_a_token(
    monkeypatch: pytest.MonkeyPatch, mcp_project: Path
):
    monkeypatch.delenv("MARIGOLD_MCP_TOKEN", raising=False)
    result = CliRunner().invoke(
        main,
        ["mcp", "--transport", "http", "--host", "0.0.0.0", "--templates-dir", str(mcp_project)],
    )
    assert result.exit_code == 1 and "without a bearer token" in result.output


def test_requests_without_the_token_are_refused(mcp_project: Path):
    app = http_app(build_server(settings_for(mcp_project, tiers="offline")), token="t0ken")
    client = TestClient(app)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "t0ken"}):
        answer = client.post(
            "/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"}, headers=headers
        )
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"].startswith("Bearer")

"""The agent story over real transports, against a Dagster instance on PostgreSQL.

Streamable HTTP: the stateless app behind a bearer token, served by uvicorn on 127.0.0.1 in this
process. stdio: `marigold mcp` as a subprocess, as a desktop agent starts it.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import httpx2
import pytest
import uvicorn
from dagster import DagsterInstance
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from starlette.types import ASGIApp

from marigold_dagster.mcp.http import http_app
from marigold_dagster.mcp.server import build_server
from tests.marigold_dagster.mcp.conftest import make_project, settings_for
from tests.marigold_dagster.mcp.story import IDENTITY, Story, agent_story

pytestmark = pytest.mark.slow

TOKEN = "a-long-random-token-for-tests"


def postgres_project(folder: Path, postgres_url: str) -> Path:
    project = make_project(folder)
    (project / "dagster.yaml").write_text(
        f"storage:\n  postgres:\n    postgres_url: {postgres_url}\ntelemetry:\n  enabled: false\n"
    )
    return project


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def serving(app: ASGIApp) -> Iterator[str]:
    """`app` served by uvicorn on 127.0.0.1 in a thread; its MCP endpoint's URL."""
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        server.should_exit = True
        thread.join(30)


def assert_on_postgres(project: Path, story: Story) -> None:
    with DagsterInstance.from_config(str(project)) as instance:
        assert "Postgres" in type(instance.run_storage).__name__
        for run_id in (story.run_id, story.resumed_run_id, story.child_run_id):
            assert instance.get_run_by_id(run_id) is not None


def test_agent_story_over_streamable_http_on_postgresql(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)  # the project's dagster.yaml: PostgreSQL
    project = postgres_project(tmp_path / "project", postgres_url)
    app = http_app(build_server(settings_for(project, identity=IDENTITY)), token=TOKEN)

    async def main(url: str) -> Story:
        async with httpx2.AsyncClient() as anonymous:
            refused = await anonymous.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
            assert refused.status_code == 401
        headers = {"Authorization": f"Bearer {TOKEN}"}
        timeout = httpx2.Timeout(30, read=600)
        async with httpx2.AsyncClient(headers=headers, timeout=timeout) as http:
            async with Client(streamable_http_client(url, http_client=http)) as client:
                return await agent_story(client)

    with serving(app) as url:
        story = anyio.run(main, url)
    assert_on_postgres(project, story)


def test_agent_story_over_stdio_on_postgresql(tmp_path: Path, postgres_url: str):
    project = postgres_project(tmp_path / "project", postgres_url)
    command = StdioServerParameters(
        command=sys.executable,
        args=[
            "-c",
            "from marigold_dagster.cli import main; main()",
            "mcp",
            "--tiers",
            "all",
            "--as",
            IDENTITY,
        ],
        cwd=project,
        env=dict(os.environ),  # the SDK passes a filtered environment: keep the approver map
    )

    async def main() -> Story:
        async with Client(command) as client:
            return await agent_story(client)

    story = anyio.run(main)
    assert_on_postgres(project, story)

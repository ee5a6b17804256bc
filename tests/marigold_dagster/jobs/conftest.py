"""Fixtures the job tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.scripted_planner import ScriptedPlanner
from resources.sglang_test_server import SGLangTestServer


@pytest.fixture(scope="module")
def planner_server() -> Iterator[tuple[SGLangTestServer, ScriptedPlanner]]:
    """The SGLang-compatible test server answering planner calls from a script, per module."""
    script = ScriptedPlanner()
    with SGLangTestServer(model="planner-double", responder=script) as server:
        yield server, script

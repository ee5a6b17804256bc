"""Oversize inputs are refused with errors that name the limit they crossed.

A 50 MB document in `acquire.load_documents`, JSON nested 10,000 levels deep from
`acquire.http_json` and as a result shown to the planner, and a template file over the size cap.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from grammar_ops import Kind, PrimitiveError
from grammar_ops.context import PrimitiveContext
from grammar_ops.primitives.acquire import (
    MAX_DOCUMENT_BYTES,
    MAX_JSON_DEPTH,
    MAX_RESPONSE_BYTES,
    HttpJson,
    HttpJsonConfig,
    LoadDocuments,
    LoadDocumentsConfig,
    json_depth,
)
from marigold_dagster.artifacts import StepValue
from marigold_dagster.errors import TemplateError
from marigold_dagster.planning.prompt import (
    MAX_RESULT_DEPTH,
    describe_result,
    prompt_variable,
    results_section,
)
from marigold_dagster.template.loader import load_template
from marigold_dagster.template.yaml_source import MAX_TEMPLATE_BYTES

FIFTY_MB = 50 * 1024 * 1024
DEEP = 10_000


def nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.fixture
def huge_document(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "small.txt").write_text("a normal report")
    with (folder / "huge.txt").open("wb") as handle:
        handle.truncate(FIFTY_MB)  # sparse: 50 MB on paper, nothing written
    return folder


def run_load(folder: Path, **config: Any) -> Any:
    cfg = LoadDocumentsConfig(path=str(folder), **config)
    return LoadDocuments().run(None, cfg, PrimitiveContext(step="load"))


def test_a_50mb_document_fails_the_step_naming_the_cap(huge_document: Path) -> None:
    with pytest.raises(PrimitiveError) as caught:
        run_load(huge_document, oversize="fail")
    message = str(caught.value)
    assert f"`huge.txt` is {FIFTY_MB} bytes, over max_bytes=1000000" in message


def test_a_50mb_document_is_skipped_or_truncated_never_read_whole(huge_document: Path) -> None:
    assert [d.id for d in run_load(huge_document)] == ["small.txt"]
    truncated = {d.id: d for d in run_load(huge_document, oversize="truncate", max_bytes=1000)}
    assert len(truncated["huge.txt"].text) == 1000
    assert truncated["huge.txt"].metadata["truncated"] is True


def test_the_size_caps_themselves_are_capped() -> None:
    with pytest.raises(ValidationError, match=f"less than or equal to {MAX_DOCUMENT_BYTES}"):
        LoadDocumentsConfig(path="/tmp", max_bytes=10**12)
    with pytest.raises(ValidationError, match=f"less than or equal to {MAX_RESPONSE_BYTES}"):
        HttpJsonConfig(url="http://127.0.0.1/", max_bytes=10**12)


@pytest.fixture(scope="module")
def json_server() -> Iterator[str]:
    bodies = {
        "/deep": b"[" * DEEP + b"]" * DEEP,
        "/deep-object": b'{"a":' * DEEP + b"1" + b"}" * DEEP,
        "/fine": b'{"data": {"items": [[1, 2], {"brackets in text": "[[[[{{{{"}]}}',
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = bodies[self.path]
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def fetch(url: str) -> Any:
    ctx = PrimitiveContext(step="fetch", allowed_hosts=frozenset({"127.0.0.1"}))
    return HttpJson().run(None, HttpJsonConfig(url=url), ctx)


@pytest.mark.parametrize("path", ["/deep", "/deep-object"])
def test_deep_json_from_http_is_refused_naming_the_limit(json_server: str, path: str) -> None:
    with pytest.raises(PrimitiveError) as caught:
        fetch(json_server + path)
    message = str(caught.value)
    assert f"nested {DEEP} levels deep, deeper than the limit of {MAX_JSON_DEPTH}" in message
    assert "MAX_JSON_DEPTH" in message


def test_json_within_the_limit_is_read(json_server: str) -> None:
    assert fetch(json_server + "/fine")["data"]["items"][1] == {"brackets in text": "[[[[{{{{"}
    # Brackets inside strings do not count, escaped quotes included.
    assert json_depth(b'["' + b"[{" * 500 + b'\\"[", [[]]]') == 3


def test_deep_json_in_results_is_described_not_rendered() -> None:
    deep = StepValue("fetch", Kind.JSON, nested(DEEP))
    text = describe_result(deep)
    assert text == (
        f"json, not shown: nested deeper than the limit of {MAX_RESULT_DEPTH} levels "
        "(MAX_RESULT_DEPTH)"
    )
    results = {"fetch": deep, "ok": StepValue("ok", Kind.JSON, {"a": 1})}
    prompt = prompt_variable(results_section(results), None)
    assert "### fetch\n" + text in prompt and '{"a": 1}' in prompt


def test_a_template_over_the_size_cap_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    with path.open("wb") as handle:
        handle.write(b"name: big\nversion: 1\ndescription: ")
        handle.truncate(MAX_TEMPLATE_BYTES * 50)
    with pytest.raises(TemplateError) as caught:
        load_template(path)
    [problem] = caught.value.findings
    assert problem.code == "OVER_LIMIT"
    assert f"over the limit of {MAX_TEMPLATE_BYTES:,} bytes (MAX_TEMPLATE_BYTES)" in problem.message
    assert f"{MAX_TEMPLATE_BYTES * 50:,} bytes" in problem.message

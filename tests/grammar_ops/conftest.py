"""Fixtures for the grammar tests: a fake model client, contexts, data on disk, an HTTP server."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from grammar_ops import ModelCall, ModelError, ModelReply, PrimitiveContext
from grammar_ops.model import complete_each

REGIONS = ["EU", "US", "APAC"]
LEVELS = ["low", "medium", "high"]


class FakeModelClient:
    """A deterministic fake of `ModelClient`: reads `subject`, understands no language.

    - `choices`: the first choice named in the subject (case-insensitive), else the first choice;
    - `json_schema`: per property, the first number (for number/integer) or the first word after
      `<property>:` (for strings) in the subject, else null;
    - otherwise: a text naming the purpose and the prompt length.
    A subject containing `FAIL` fails with a `ModelError`.
    """

    model_name = "fake-model"

    def __init__(self) -> None:
        self.calls: list[ModelCall] = []

    def complete(self, call: ModelCall) -> ModelReply:
        self.calls.append(call)
        subject = call.subject or ""
        if "FAIL" in subject:
            raise ModelError(f"fake failure for subject {subject[:20]!r}")
        value: Any
        if call.choices:
            value = next((c for c in call.choices if c.lower() in subject.lower()), call.choices[0])
            text = value
        elif call.json_schema is not None:
            value = {
                name: _guess(name, prop, subject)
                for name, prop in call.json_schema.get("properties", {}).items()
            }
            text = json.dumps(value)
        else:
            text = f"{call.purpose}: {len(call.prompt)} characters"
            value = text
        return ModelReply(
            text=text,
            value=value,
            model=self.model_name,
            prompt_tokens=len(call.prompt) // 4 + 1,
            completion_tokens=len(text) // 4 + 1,
            cost_usd=0.0001,
        )

    def complete_many(self, calls: Sequence[ModelCall]) -> list[ModelReply | ModelError]:
        return complete_each(self.complete, calls)


def _guess(name: str, schema: dict[str, Any], subject: str) -> Any:
    if schema.get("type") in {"number", "integer"}:
        found = re.search(r"-?\d+(?:\.\d+)?", subject)
        if not found:
            return None
        return float(found.group()) if schema["type"] == "number" else int(float(found.group()))
    found = re.search(rf"{re.escape(name)}:\s*(\w+)", subject)
    return found.group(1) if found else None


@pytest.fixture
def fake_model() -> FakeModelClient:
    return FakeModelClient()


@pytest.fixture
def make_ctx(tmp_path: Path, fake_model: FakeModelClient) -> Callable[..., PrimitiveContext]:
    """A factory of contexts writing under tmp_path, with the fake model bound as `worker`."""

    def make(**overrides: Any) -> PrimitiveContext:
        fields: dict[str, Any] = {
            "step": "test_step",
            "artifacts_dir": tmp_path / "artifacts",
            "models": {"worker": fake_model},
        }
        fields.update(overrides)
        return PrimitiveContext(**fields)

    return make


def sales_rows(count: int) -> list[dict[str, Any]]:
    """Deterministic sales rows: id, region, amount, label, text."""
    return [
        {
            "id": i,
            "region": REGIONS[i % 3],
            "amount": float((i * 37) % 2000),
            "label": LEVELS[i % 3],
            "text": f"contract {i} risk {LEVELS[(i * 7) % 3]} party: P{i % 11}",
        }
        for i in range(count)
    ]


@pytest.fixture
def sales_table() -> pa.Table:
    return pa.Table.from_pylist(sales_rows(3000))


@pytest.fixture
def sales_parquet(tmp_path: Path, sales_table: pa.Table) -> Path:
    path = tmp_path / "sales.parquet"
    pq.write_table(sales_table, path, row_group_size=500)
    return path


@pytest.fixture
def sales_csv(tmp_path: Path, sales_table: pa.Table) -> Path:
    path = tmp_path / "sales.csv"
    pa_csv.write_csv(sales_table, path)
    return path


class _Handler(BaseHTTPRequestHandler):
    received: list[dict[str, Any]]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _json(self, status: int, payload: Any) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        url = urlparse(self.path)
        query = parse_qs(url.query)
        if url.path == "/data":
            rows = [{"id": i, "value": i * 2} for i in range(2000)]
            self._json(200, {"data": {"items": rows}, "count": len(rows)})
        elif url.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", query["to"][0])
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif url.path == "/host":
            self._json(200, {"host": self.headers.get("Host")})
        elif url.path == "/big":
            self._json(200, {"blob": "x" * 50_000})
        elif url.path == "/chunked":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"blob": "' + b"y" * 50_000 + b'"}')
            self.close_connection = True
        elif url.path == "/text":
            self.send_response(200)
            self.send_header("Content-Length", "5")
            self.end_headers()
            self.wfile.write(b"hello")
        elif url.path == "/slow":
            time.sleep(1.5)
            self._json(200, {"late": True})
        else:
            self._json(404, {"error": "not found"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        self.received.append(
            {"path": self.path, "body": json.loads(body), "headers": dict(self.headers)}
        )
        if self.path == "/fail":
            self._json(500, {"error": "boom"})
        elif self.path == "/redirect":
            self.send_response(307)
            self.send_header("Location", "http://127.0.0.1:9/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self._json(200, {"ok": True})


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that stop reading (size caps, timeouts) are expected here."""


class TestServer:
    """A real HTTP server on 127.0.0.1 for the network primitives."""

    __test__ = False

    def __init__(self, server: ThreadingHTTPServer, received: list[dict[str, Any]]):
        self.server = server
        self.received = received
        self.port = server.server_address[1]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def http_server() -> Iterator[TestServer]:
    received: list[dict[str, Any]] = []
    handler = type("Handler", (_Handler,), {"received": received})
    server = _QuietServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield TestServer(server, received)
    finally:
        server.shutdown()
        server.server_close()

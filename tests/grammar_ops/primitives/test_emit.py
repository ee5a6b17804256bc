"""emit.write_table (idempotent Parquet upserts) and emit.webhook (allow-listed POST)."""

from __future__ import annotations

import hashlib
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from grammar_ops import CompositionError, Decision, PrimitiveError, standard_catalog
from grammar_ops.findings import HostNotAllowed


def run(uses, config, value, ctx):
    return standard_catalog().resolve(uses, config).run(value, ctx).value


def test_write_table_replaces_and_is_idempotent(make_ctx, sales_table, tmp_path):
    ctx = make_ctx()
    receipt = run("emit.write_table", {"name": "report"}, sales_table, ctx)
    path = tmp_path / "artifacts" / "tables" / "report.parquet"
    assert receipt == {"path": str(path), "rows": 3000, "written": 3000}
    first = path.read_bytes()
    run("emit.write_table", {"name": "report"}, sales_table, ctx)
    assert path.read_bytes() == first
    assert pq.read_table(path).equals(sales_table)


def test_write_table_upserts_by_key(make_ctx, sales_table, tmp_path):
    ctx = make_ctx()
    config = {"name": "report", "key": ["id"]}
    run("emit.write_table", config, sales_table.slice(0, 2000), ctx)
    changed = sales_table.slice(1500, 1500).to_pylist()
    for row in changed:
        row["label"] = "updated"
    receipt = run("emit.write_table", config, changed[::-1], ctx)
    assert receipt["rows"] == 3000 and receipt["written"] == 1500
    path = tmp_path / "artifacts" / "tables" / "report.parquet"
    table = pq.read_table(path)
    assert table["id"].to_pylist() == list(range(3000))
    assert set(table.slice(1500)["label"].to_pylist()) == {"updated"}
    assert (
        table.slice(0, 1500)["label"].to_pylist() == sales_table.slice(0, 1500)["label"].to_pylist()
    )
    # Re-running with the same rows gives the same file.
    before = path.read_bytes()
    run("emit.write_table", config, changed, ctx)
    assert path.read_bytes() == before


def test_write_table_errors(make_ctx):
    ctx = make_ctx()
    with pytest.raises(PrimitiveError, match="repeat keys"):
        run("emit.write_table", {"name": "t", "key": ["k"]}, [{"k": 1}, {"k": 1}], ctx)
    with pytest.raises(PrimitiveError, match="unknown field"):
        run("emit.write_table", {"name": "t", "key": ["nope"]}, [{"k": 1}], ctx)
    run("emit.write_table", {"name": "t", "key": ["k"]}, [{"k": 1, "v": 1}], ctx)
    with pytest.raises(PrimitiveError, match="do not fit the existing"):
        run("emit.write_table", {"name": "t", "key": ["k"]}, [{"k": 2, "v": [1]}], ctx)
    with pytest.raises(CompositionError, match=r"\^\[A-Za-z0-9_\]\+\$"):
        standard_catalog().resolve("emit.write_table", {"name": "../escape"})


def test_webhook_posts_json(make_ctx, http_server):
    ctx = make_ctx(allowed_hosts=frozenset({"127.0.0.1"}))
    records = [{"id": i, "ok": True} for i in range(1000)]
    receipt = run("emit.webhook", {"url": http_server.url("/hook")}, records, ctx)
    assert receipt["status"] == 200 and receipt["url"] == http_server.url("/hook")
    (received,) = http_server.received
    assert received["body"] == records
    body = json.dumps(records, sort_keys=True).encode()
    assert received["headers"]["Idempotency-Key"] == hashlib.sha256(body).hexdigest()
    run("emit.webhook", {"url": http_server.url("/hook")}, Decision(branches=["a"]), ctx)
    assert http_server.received[-1]["body"] == {"branches": ["a"], "reason": ""}


def test_webhook_errors(make_ctx, http_server):
    ctx = make_ctx(allowed_hosts=frozenset({"127.0.0.1"}))
    with pytest.raises(PrimitiveError, match="answered HTTP 500"):
        run("emit.webhook", {"url": http_server.url("/fail")}, {"a": 1}, ctx)
    with pytest.raises(PrimitiveError, match="HTTP 307.*redirects are not followed"):
        run("emit.webhook", {"url": http_server.url("/redirect")}, {"a": 1}, ctx)
    with pytest.raises(PrimitiveError, match="over max_body_bytes=10"):
        run(
            "emit.webhook",
            {"url": http_server.url("/hook"), "max_body_bytes": 10},
            [{"a": "x" * 20}],
            ctx,
        )
    with pytest.raises(HostNotAllowed, match="not in allowed_hosts"):
        run("emit.webhook", {"url": http_server.url("/hook")}, {"a": 1}, make_ctx())
    assert len(http_server.received) == 2


def test_side_effects_only_last():
    catalog = standard_catalog()
    with pytest.raises(CompositionError) as caught:
        catalog.compose(
            [
                {"use": "emit.write_table", "with": {"name": "a"}},
                {"use": "emit.webhook", "with": {"url": "http://h"}},
            ]
        )
    assert [f.code for f in caught.value.findings] == ["TOO_MANY_SIDE_EFFECTS"]
    with pytest.raises(CompositionError, match="must come last"):
        catalog.compose(
            [
                {"use": "emit.write_table", "with": {"name": "a"}},
                {"use": "transform.to_records"},
            ]
        )
    assert catalog.resolve("emit.write_table", {"name": "a"}).side_effect


def test_write_table_accepts_a_table_produced_upstream(make_ctx):
    out = (
        standard_catalog()
        .compose(
            [
                {"use": "transform.to_table"},
                {"use": "emit.write_table", "with": {"name": "rows"}},
            ]
        )
        .run([{"a": 1}, {"a": 2}], make_ctx())
        .value
    )
    assert out["rows"] == 2 and isinstance(pq.read_table(out["path"]), pa.Table)

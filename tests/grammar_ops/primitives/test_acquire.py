"""acquire.read_table, acquire.load_documents and acquire.http_json on real files and HTTP."""

from __future__ import annotations

import pytest

from grammar_ops import CompositionError, Document, Kind, PrimitiveError, standard_catalog
from grammar_ops.findings import HostNotAllowed


def run(uses, config, ctx, value=None):
    return standard_catalog().resolve(uses, config).run(value, ctx).value


def test_read_parquet_by_template_input(make_ctx, sales_parquet, sales_table):
    ctx = make_ctx(template_inputs={"sales": str(sales_parquet)})
    table = run("acquire.read_table", {"input": "sales"}, ctx)
    assert table.num_rows == 3000
    assert table.equals(sales_table)


def test_read_parquet_columns_and_limit_stream_batches(make_ctx, sales_parquet):
    config = {
        "path": str(sales_parquet),
        "columns": ["amount", "id"],
        "limit": 1234,
        "batch_size": 100,
    }
    table = run("acquire.read_table", config, make_ctx())
    assert table.column_names == ["amount", "id"]
    assert table.num_rows == 1234
    assert table["id"].to_pylist() == list(range(1234))


def test_read_csv(make_ctx, sales_csv):
    table = run("acquire.read_table", {"path": str(sales_csv), "limit": 2500}, make_ctx())
    assert table.num_rows == 2500
    assert set(table.column_names) == {"id", "region", "amount", "label", "text"}


def test_read_csv_columns_stream(make_ctx, sales_csv):
    config = {"path": str(sales_csv), "columns": ["label", "id"], "limit": 10}
    table = run("acquire.read_table", config, make_ctx())
    assert table.column_names == ["label", "id"] and table["id"].to_pylist() == list(range(10))


def test_read_table_declares_its_template_input():
    composition = standard_catalog().resolve("acquire.read_table", {"input": "contracts"})
    assert composition.template_inputs == {"contracts"}
    assert composition.output_kind(Kind.NOTHING) is Kind.TABLE


def test_read_table_errors(make_ctx, sales_parquet, tmp_path):
    with pytest.raises(PrimitiveError, match="was not supplied; inputs supplied: other"):
        run("acquire.read_table", {"input": "sales"}, make_ctx(template_inputs={"other": "x"}))
    with pytest.raises(PrimitiveError, match="has no column.*nope.*its columns: id"):
        run("acquire.read_table", {"path": str(sales_parquet), "columns": ["nope"]}, make_ctx())
    with pytest.raises(PrimitiveError, match="does not exist"):
        run("acquire.read_table", {"path": str(tmp_path / "missing.parquet")}, make_ctx())
    odd = tmp_path / "data.xlsx"
    odd.write_text("x")
    with pytest.raises(PrimitiveError, match="cannot tell the format"):
        run("acquire.read_table", {"path": str(odd)}, make_ctx())
    broken = tmp_path / "broken.parquet"
    broken.write_text("not parquet")
    with pytest.raises(PrimitiveError, match="cannot read"):
        run("acquire.read_table", {"path": str(broken)}, make_ctx())


def test_read_table_config_needs_exactly_one_source():
    with pytest.raises(CompositionError, match="exactly one of `input`"):
        standard_catalog().resolve("acquire.read_table", {})
    with pytest.raises(CompositionError, match="exactly one of `input`"):
        standard_catalog().resolve("acquire.read_table", {"input": "a", "path": "b"})
    with pytest.raises(CompositionError, match="INVALID_CONFIG"):
        standard_catalog().resolve("acquire.read_table", {"input": "a", "colums": ["x"]})


@pytest.fixture
def docs_folder(tmp_path):
    root = tmp_path / "docs"
    (root / "sub").mkdir(parents=True)
    for i in range(120):
        (root / f"note_{i:03d}.txt").write_text(f"note {i} body")
    (root / "sub" / "readme.md").write_text("# Title\nmarkdown body")
    (root / "ignored.csv").write_text("a,b")
    (root / "huge.txt").write_text("z" * 5000)
    return root


def test_load_documents(make_ctx, docs_folder):
    ctx = make_ctx(template_inputs={"docs": str(docs_folder)})
    docs = run("acquire.load_documents", {"input": "docs", "max_bytes": 1000}, ctx)
    assert len(docs) == 121  # huge.txt skipped, the csv not matched
    assert all(isinstance(d, Document) for d in docs)
    assert docs[0].id == "note_000.txt" and docs[0].text == "note 0 body"
    assert docs[-1].id == "sub/readme.md"


def test_load_documents_size_cap_modes(make_ctx, docs_folder):
    config = {"path": str(docs_folder), "patterns": ["huge.txt"], "max_bytes": 1000}
    truncated = run("acquire.load_documents", {**config, "oversize": "truncate"}, make_ctx())
    assert len(truncated[0].text) == 1000 and truncated[0].metadata["truncated"] is True
    with pytest.raises(PrimitiveError, match="over max_bytes=1000"):
        run("acquire.load_documents", {**config, "oversize": "fail"}, make_ctx())


def test_load_documents_errors(make_ctx, docs_folder):
    with pytest.raises(PrimitiveError, match="more than max_documents=10"):
        run("acquire.load_documents", {"path": str(docs_folder), "max_documents": 10}, make_ctx())
    with pytest.raises(PrimitiveError, match="is not a folder"):
        run("acquire.load_documents", {"path": str(docs_folder / "note_001.txt")}, make_ctx())


def test_load_documents_total_size_cap_counts_what_would_be_read(make_ctx, docs_folder):
    notes = sum(f.stat().st_size for f in docs_folder.glob("*.txt") if f.name != "huge.txt")
    readme = (docs_folder / "sub" / "readme.md").stat().st_size
    config = {"path": str(docs_folder), "max_bytes": 1000, "max_total_bytes": notes + readme + 999}
    with pytest.raises(PrimitiveError, match=r"add up to \d+ bytes, over max_total_bytes="):
        run("acquire.load_documents", {**config, "oversize": "truncate"}, make_ctx())
    kept = run("acquire.load_documents", {**config, "oversize": "skip"}, make_ctx())
    assert len(kept) == 121, "a skipped file does not count towards the total"


def test_load_documents_ignores_links_out_of_the_folder(make_ctx, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    root = tmp_path / "folder"
    root.mkdir()
    (root / "link.txt").symlink_to(secret)
    (root / "ok.txt").write_text("ok")
    docs = run("acquire.load_documents", {"path": str(root)}, make_ctx())
    assert [d.id for d in docs] == ["ok.txt"]


def test_http_json_fetches_and_selects(make_ctx, http_server):
    ctx = make_ctx(allowed_hosts=frozenset({"127.0.0.1"}))
    items = run("acquire.http_json", {"url": http_server.url("/data"), "select": "data.items"}, ctx)
    assert len(items) == 2000 and items[1] == {"id": 1, "value": 2}
    whole = run("acquire.http_json", {"url": http_server.url("/data")}, ctx)
    assert whole["count"] == 2000


def test_http_json_errors(make_ctx, http_server):
    ctx = make_ctx(allowed_hosts=frozenset({"127.0.0.1"}))
    with pytest.raises(PrimitiveError, match="HTTP 404"):
        run("acquire.http_json", {"url": http_server.url("/missing")}, ctx)
    with pytest.raises(PrimitiveError, match="did not return JSON"):
        run("acquire.http_json", {"url": http_server.url("/text")}, ctx)
    with pytest.raises(PrimitiveError, match="larger than max_bytes=1000"):
        run("acquire.http_json", {"url": http_server.url("/big"), "max_bytes": 1000}, ctx)
    with pytest.raises(PrimitiveError, match="larger than max_bytes=1000"):
        run("acquire.http_json", {"url": http_server.url("/chunked"), "max_bytes": 1000}, ctx)
    with pytest.raises(PrimitiveError, match="timed out"):
        run("acquire.http_json", {"url": http_server.url("/slow"), "timeout_s": 0.3}, ctx)
    with pytest.raises(PrimitiveError, match=r"matched nothing .*top level: count, data"):
        run("acquire.http_json", {"url": http_server.url("/data"), "select": "nope"}, ctx)
    with pytest.raises(HostNotAllowed):
        run("acquire.http_json", {"url": http_server.url("/data")}, make_ctx())


def test_http_json_config_errors():
    catalog = standard_catalog()
    with pytest.raises(CompositionError, match="must start with http"):
        catalog.resolve("acquire.http_json", {"url": "file:///etc/passwd"})
    with pytest.raises(CompositionError, match="not a valid JMESPath"):
        catalog.resolve("acquire.http_json", {"url": "http://x", "select": "a[["})

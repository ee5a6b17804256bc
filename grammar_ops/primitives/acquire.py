"""`acquire.*`: primitives that start a data flow from a file, a folder or an HTTP endpoint.

They ignore their input (so they accept every kind) and read a template input by name, a path,
or a URL on the template's allow-list.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from pydantic import Field, model_validator

from grammar_ops.context import PrimitiveContext
from grammar_ops.contracts import Document, Kind
from grammar_ops.expressions import ExpressionError, JMESPathSelect, search_jmespath
from grammar_ops.failures import TransientError, transient_status
from grammar_ops.findings import PrimitiveError
from grammar_ops.network import HttpUrl, guarded_request
from grammar_ops.primitive import Primitive, PrimitiveConfig

MAX_DOCUMENT_BYTES = 100_000_000  # the largest `max_bytes` a config may set, per document
MAX_DOCUMENTS_TOTAL_BYTES = 2_000_000_000  # the largest `max_total_bytes` a config may set
MAX_RESPONSE_BYTES = 100_000_000  # the largest `max_bytes` a config may set, per response
MAX_JSON_DEPTH = 100  # deeper JSON is refused before it is parsed

_INPUT = "Name of a template input whose value is the path (declared under `inputs:`)."
_PATH = "A path to read, when not given through a template input."


class _SourceConfig(PrimitiveConfig):
    input: str | None = Field(None, description=_INPUT)
    path: str | None = Field(None, description=_PATH)

    @model_validator(mode="after")
    def _one_source(self) -> _SourceConfig:
        if (self.input is None) == (self.path is None):
            raise ValueError("set exactly one of `input` (a template input name) or `path`")
        return self


def _source_path(config: _SourceConfig, ctx: PrimitiveContext, what: str) -> Path:
    if config.input is not None:
        value = ctx.template_inputs.get(config.input)
        if value is None:
            known = ", ".join(sorted(ctx.template_inputs)) or "none"
            raise PrimitiveError(
                f"template input `{config.input}` was not supplied; inputs supplied: {known}"
            )
        path = Path(value)
    else:
        path = Path(str(config.path))
    if not path.exists():
        raise PrimitiveError(f"{what} `{path}` does not exist")
    return path


class ReadTableConfig(
    _SourceConfig, json_schema_extra={"examples": [{"input": "contracts", "limit": 1000}]}
):
    format: Literal["auto", "parquet", "csv"] = Field(
        "auto", description="File format; `auto` decides by the suffix (.parquet, .pq, .csv)."
    )
    columns: list[str] | None = Field(
        None, description="Columns to read, in this order; all columns when omitted."
    )
    limit: int | None = Field(None, gt=0, description="Read at most this many rows.")
    batch_size: int = Field(
        65_536, gt=0, le=1_000_000, description="Rows per record batch while streaming."
    )


class ReadTable(Primitive):
    name = "acquire.read_table"
    summary = "Read a Parquet or CSV file into a table, streamed in record batches."
    description = (
        "Reads the file named by a template input (or a path) batch by batch, keeping only the "
        "chosen columns and stopping after `limit` rows. Starts a data flow: its input is ignored."
    )
    accepts = frozenset(Kind)
    ignores_input = True
    produces = Kind.TABLE
    Config = ReadTableConfig

    def reads_inputs(self, config: Any) -> tuple[str, ...]:
        return (config.input,) if config.input else ()

    def run(self, value: Any, config: ReadTableConfig, ctx: PrimitiveContext) -> pa.Table:
        path = _source_path(config, ctx, "table file")
        fmt = config.format if config.format != "auto" else _format_of(path)
        try:
            if fmt == "parquet":
                parquet = pq.ParquetFile(path)
                schema = parquet.schema_arrow
                _check_columns(config.columns, schema, path)
                batches = parquet.iter_batches(batch_size=config.batch_size, columns=config.columns)
            else:
                reader = pa_csv.open_csv(path, read_options=pa_csv.ReadOptions(block_size=1 << 22))
                schema = reader.schema
                _check_columns(config.columns, schema, path)
                batches = (
                    batch.select(config.columns) if config.columns else batch for batch in reader
                )
            if config.columns:
                schema = pa.schema([schema.field(c) for c in config.columns])
            kept: list[pa.RecordBatch] = []
            rows = 0
            for batch in batches:
                ctx.check_deadline()
                if config.limit is not None and rows + batch.num_rows >= config.limit:
                    kept.append(batch.slice(0, config.limit - rows))
                    break
                kept.append(batch)
                rows += batch.num_rows
        except (pa.ArrowInvalid, OSError) as error:
            raise PrimitiveError(f"cannot read `{path}` as {fmt}: {error}") from None
        return pa.Table.from_batches(kept, schema=schema)


def _format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in {".parquet", ".pq"}:
        return "parquet"
    if suffix == ".csv":
        return "csv"
    raise PrimitiveError(
        f"cannot tell the format of `{path.name}`; use a .parquet or .csv file or set `format`"
    )


def _check_columns(columns: list[str] | None, schema: pa.Schema, path: Path) -> None:
    missing = [c for c in columns or () if c not in schema.names]
    if missing:
        raise PrimitiveError(
            f"`{path.name}` has no column(s) {', '.join(missing)}; its columns: "
            f"{', '.join(schema.names)}"
        )


class LoadDocumentsConfig(
    _SourceConfig, json_schema_extra={"examples": [{"input": "reports", "patterns": ["*.md"]}]}
):
    patterns: list[str] = Field(
        default_factory=lambda: ["*.txt", "*.md"],
        min_length=1,
        description="Glob patterns of the files to load, relative to the folder.",
    )
    recursive: bool = Field(True, description="Also look in subfolders.")
    max_bytes: int = Field(
        1_000_000,
        gt=0,
        le=MAX_DOCUMENT_BYTES,
        description="Size cap per file; larger files are handled by `oversize`.",
    )
    oversize: Literal["skip", "truncate", "fail"] = Field(
        "skip", description="What to do with a file over `max_bytes`."
    )
    max_documents: int = Field(10_000, gt=0, description="Fail when more files match than this.")
    max_total_bytes: int = Field(
        256_000_000,
        gt=0,
        le=MAX_DOCUMENTS_TOTAL_BYTES,
        description="Fail, before reading any file, when the documents to load add up to more.",
    )


class LoadDocuments(Primitive):
    name = "acquire.load_documents"
    summary = "Load a folder of .txt/.md files as documents."
    description = (
        "Loads every file matching the glob patterns under a folder (a template input or a path), "
        "sorted by relative path, as documents with id = relative path and metadata {path, "
        "bytes}. Files over the size cap are skipped, truncated or fail the step; the step "
        "fails before reading anything when the files to load add up to over max_total_bytes."
    )
    accepts = frozenset(Kind)
    ignores_input = True
    produces = Kind.DOCUMENTS
    Config = LoadDocumentsConfig

    def reads_inputs(self, config: Any) -> tuple[str, ...]:
        return (config.input,) if config.input else ()

    def run(self, value: Any, config: LoadDocumentsConfig, ctx: PrimitiveContext) -> list[Document]:
        root = _source_path(config, ctx, "documents folder")
        if not root.is_dir():
            raise PrimitiveError(f"`{root}` is not a folder; acquire.load_documents reads folders")
        resolved_root = root.resolve()
        files: set[Path] = set()
        for pattern in config.patterns:
            found = root.rglob(pattern) if config.recursive else root.glob(pattern)
            # A link out of the folder would read files the template never named.
            files.update(
                f for f in found if f.is_file() and f.resolve().is_relative_to(resolved_root)
            )
        if len(files) > config.max_documents:
            raise PrimitiveError(
                f"{len(files)} files match under `{root}`, more than max_documents="
                f"{config.max_documents}; narrow `patterns` or raise the cap"
            )
        to_read: list[tuple[Path, str, int]] = []
        for file in sorted(files, key=lambda f: f.relative_to(root).as_posix()):
            size = file.stat().st_size
            relative = file.relative_to(root).as_posix()
            if size > config.max_bytes:
                if config.oversize == "fail":
                    raise PrimitiveError(
                        f"`{relative}` is {size} bytes, over max_bytes={config.max_bytes}; raise "
                        "the cap or set oversize: skip|truncate"
                    )
                if config.oversize == "skip":
                    ctx.log.warning("skipping %s: %d bytes over the cap", relative, size)
                    continue
            to_read.append((file, relative, size))
        total = sum(min(size, config.max_bytes) for _, _, size in to_read)
        if total > config.max_total_bytes:
            raise PrimitiveError(
                f"the {len(to_read)} documents under `{root}` add up to {total} bytes, over "
                f"max_total_bytes={config.max_total_bytes}; narrow `patterns`, lower max_bytes "
                "with oversize: skip|truncate, or raise the cap"
            )
        documents = []
        for file, relative, size in to_read:
            ctx.check_deadline()
            with file.open("rb") as handle:
                raw = handle.read(config.max_bytes)
            documents.append(
                Document(
                    id=relative,
                    text=raw.decode("utf-8", errors="replace"),
                    metadata={"path": str(file), "bytes": size, "truncated": size > len(raw)},
                )
            )
        return documents


class HttpJsonConfig(
    PrimitiveConfig,
    json_schema_extra={"examples": [{"url": "https://api.example.com/v1/rates", "select": "data"}]},
):
    url: HttpUrl = Field(description="http(s) URL to GET; its host must be in allowed_hosts.")
    select: JMESPathSelect = Field(
        None, description="A JMESPath expression picking part of the response (e.g. `data.items`)."
    )
    timeout_s: float = Field(10.0, gt=0, le=120, description="Total time for the request.")
    max_bytes: int = Field(
        5_000_000, gt=0, le=MAX_RESPONSE_BYTES, description="Largest response body accepted."
    )
    max_redirects: int = Field(3, ge=0, le=10, description="Redirects followed, each re-checked.")


class HttpJson(Primitive):
    name = "acquire.http_json"
    summary = "GET JSON from an allow-listed HTTP endpoint."
    description = (
        "Fetches a URL whose host is in the template's allowed_hosts (private and loopback "
        "addresses only when listed; redirects re-checked hop by hop), caps size and time, "
        "parses JSON and optionally picks a part with JMESPath."
    )
    accepts = frozenset(Kind)
    ignores_input = True
    produces = Kind.JSON
    Config = HttpJsonConfig

    def run(self, value: Any, config: HttpJsonConfig, ctx: PrimitiveContext) -> Any:
        timeout = ctx.bounded_timeout(config.timeout_s)
        response = guarded_request(
            "GET",
            config.url,
            allowed_hosts=ctx.allowed_hosts,
            timeout_s=timeout,
            max_bytes=config.max_bytes,
            max_redirects=config.max_redirects,
            headers={"Accept": "application/json"},
        )
        if not 200 <= response.status_code < 300:
            failed = TransientError if transient_status(response.status_code) else PrimitiveError
            raise failed(f"GET {response.url} answered HTTP {response.status_code}; expected 2xx")
        depth = json_depth(response.content)
        if depth > MAX_JSON_DEPTH:
            raise PrimitiveError(
                f"GET {response.url} returned JSON nested {depth} levels deep, deeper than the "
                f"limit of {MAX_JSON_DEPTH} (MAX_JSON_DEPTH); select a shallower endpoint"
            )
        try:
            data = json.loads(response.content)
        except ValueError as error:
            raise PrimitiveError(f"GET {response.url} did not return JSON: {error}") from None
        if config.select is None:
            return data
        try:
            picked = search_jmespath(config.select, data)
        except ExpressionError as error:
            raise PrimitiveError(f"acquire.http_json `select`: {error}") from None
        if picked is None:
            keys = ", ".join(sorted(data)) if isinstance(data, dict) else type(data).__name__
            raise PrimitiveError(
                f"`select: {config.select}` matched nothing in the response from {response.url} "
                f"(top level: {keys})"
            )
        return picked


# A string, or an unterminated one running to the end of the text: every quote starts a match
# that succeeds, so the scan never restarts inside a failed string (which made it quadratic).
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
_JSON_BRACKET = re.compile(rb"[\[\]{}]")


def json_depth(content: bytes) -> int:
    """The deepest nesting of arrays and objects in JSON text, found without parsing it.

    Strings are skipped, so brackets inside them do not count; the text need not be valid.
    A text with few brackets returns their count (an upper bound) without scanning.
    """
    if content.count(b"[") + content.count(b"{") <= MAX_JSON_DEPTH:
        return content.count(b"[") + content.count(b"{")  # an upper bound, within the limit
    deepest = depth = 0
    for match in _JSON_BRACKET.finditer(_JSON_STRING.sub(b'""', content)):
        if match.group() in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest

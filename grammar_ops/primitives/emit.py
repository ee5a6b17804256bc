"""`emit.*`: the side-effecting ends of a flow: write a Parquet table, POST to a webhook.

Both are idempotent where the target allows: `emit.write_table` upserts by key (or replaces the
file) and writes atomically; `emit.webhook` sends an `Idempotency-Key` derived from the body.
Each produces a JSON receipt.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field, field_validator

from grammar_ops.context import PrimitiveContext
from grammar_ops.contracts import Decision, Kind
from grammar_ops.failures import TransientError, transient_status
from grammar_ops.findings import PrimitiveError
from grammar_ops.network import HttpUrl, guarded_request
from grammar_ops.primitive import Primitive, PrimitiveConfig
from grammar_ops.primitives.decide import BRANCH_NAME
from grammar_ops.primitives.transform import TABULAR
from grammar_ops.rows import require_fields, table_from_rows


class WriteTableConfig(
    PrimitiveConfig,
    json_schema_extra={"examples": [{"name": "contract_review_report", "key": ["contract_id"]}]},
):
    name: str = Field(description="Table name; written to <artifacts>/tables/<name>.parquet.")
    key: list[str] | None = Field(
        None,
        description="Key fields: rows upsert into the existing table by key (sorted by key). "
        "Without a key the file is replaced.",
    )

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        if not BRANCH_NAME.fullmatch(name):
            raise ValueError("name must match ^[A-Za-z0-9_]+$ (it becomes a file name)")
        return name


class WriteTable(Primitive):
    name = "emit.write_table"
    summary = "Write rows to a Parquet table in the artifacts folder (upsert by key)."
    description = (
        "Writes the input to <artifacts>/tables/<name>.parquet atomically. With `key`, rows "
        "replace existing rows with the same key and the result is sorted by key, so re-running "
        "with the same rows gives the same file. Produces a receipt {path, rows, written}."
    )
    accepts = TABULAR
    produces = Kind.JSON
    side_effect = True
    Config = WriteTableConfig

    def run(self, value: Any, config: WriteTableConfig, ctx: PrimitiveContext) -> dict[str, Any]:
        table = value if isinstance(value, pa.Table) else table_from_rows(value)
        path = ctx.artifacts_dir / "tables" / f"{config.name}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        merged = table
        if config.key:
            merged = self._upsert(table, config.key, path)
        temporary = path.with_suffix(".parquet.tmp")
        pq.write_table(merged, temporary)
        os.replace(temporary, path)
        return {"path": str(path), "rows": merged.num_rows, "written": table.num_rows}

    def _upsert(self, table: pa.Table, key: list[str], path: Any) -> pa.Table:
        require_fields(key, table, "emit.write_table `key`")
        new_keys = [tuple(row.values()) for row in table.select(key).to_pylist()]
        if len(set(new_keys)) != len(new_keys):
            raise PrimitiveError(
                f"emit.write_table: the rows repeat keys on {key}; each key may appear once"
            )
        if path.exists():
            existing = pq.read_table(path)
            require_fields(key, existing, f"emit.write_table existing `{path.name}`")
            fresh = set(new_keys)
            keep = [tuple(r.values()) not in fresh for r in existing.select(key).to_pylist()]
            try:
                table = pa.concat_tables(
                    [existing.filter(pa.array(keep, type=pa.bool_())), table],
                    promote_options="permissive",
                )
            except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
                raise PrimitiveError(
                    f"emit.write_table: rows do not fit the existing `{path.name}` ({error}); "
                    "keep field types as they were or write under a new name"
                ) from None
        return table.sort_by([(k, "ascending") for k in key])


class WebhookConfig(
    PrimitiveConfig, json_schema_extra={"examples": [{"url": "https://hooks.example.com/review"}]}
):
    url: HttpUrl = Field(description="http(s) URL to POST to; its host must be in allowed_hosts.")
    timeout_s: float = Field(10.0, gt=0, le=120, description="Total time for the request.")
    max_body_bytes: int = Field(1_000_000, gt=0, description="Largest JSON body sent.")
    max_response_bytes: int = Field(100_000, gt=0, description="Largest response read.")


class Webhook(Primitive):
    name = "emit.webhook"
    summary = "POST the input as JSON to an allow-listed webhook URL."
    description = (
        "Sends records, JSON or a decision as a JSON body to a URL whose host is in the "
        "template's allowed_hosts (same checks as acquire.http_json; redirects are not "
        "followed), with an Idempotency-Key header. Non-2xx fails. Produces a receipt "
        "{url, status, bytes}."
    )
    accepts = frozenset({Kind.RECORDS, Kind.JSON, Kind.DECISION})
    produces = Kind.JSON
    side_effect = True
    Config = WebhookConfig

    def run(self, value: Any, config: WebhookConfig, ctx: PrimitiveContext) -> dict[str, Any]:
        if isinstance(value, Decision):
            value = value.model_dump()
        body = json.dumps(value, sort_keys=True, default=str, ensure_ascii=False).encode("utf-8")
        if len(body) > config.max_body_bytes:
            raise PrimitiveError(
                f"emit.webhook body is {len(body)} bytes, over max_body_bytes="
                f"{config.max_body_bytes}; aggregate first or raise the cap"
            )
        timeout = ctx.bounded_timeout(config.timeout_s)
        response = guarded_request(
            "POST",
            config.url,
            allowed_hosts=ctx.allowed_hosts,
            timeout_s=timeout,
            max_bytes=config.max_response_bytes,
            content=body,
            headers={"Idempotency-Key": hashlib.sha256(body).hexdigest()},
        )
        if not 200 <= response.status_code < 300:
            failed = TransientError if transient_status(response.status_code) else PrimitiveError
            raise failed(
                f"emit.webhook: POST {response.url} answered HTTP {response.status_code}; "
                "expected 2xx (redirects are not followed for POST)"
            )
        return {"url": response.url, "status": response.status_code, "bytes": len(body)}

"""The low trust-boundary findings: each reproduced, each fixed.

- a name check with `re.match(...$)` accepted a trailing newline;
- credentials inside MARIGOLD_SGLANG_URL were stored in the job snapshot the webserver serves;
- run data was written world-readable under the default umask;
- previews rendered data-derived Markdown (an image a viewer's browser would fetch).
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from dagster import TableMetadataValue
from dagster._core.snap import JobSnap
from dagster._serdes import serialize_value

from marigold_dagster.artifacts import artifacts_dir, store_value
from marigold_dagster.errors import TemplateError
from marigold_dagster.jobs.definitions import build_defs
from marigold_dagster.records.markdown import markdown_text
from marigold_dagster.runtime.composition import output_summary
from marigold_dagster.template.loader import load_template

FOLLOW_UP = """\
name: follow
version: 1
inputs:
  rows: {{kind: table, default: rows.csv}}
triggers:
  after: {{template: lead, inputs: {inputs}}}
budget: {{max_steps: 5, max_tokens: 100, max_cost_usd: 1, max_fanout: 2}}
steps:
  - {{name: load, uses: acquire.read_table, with: {{input: rows}}}}
"""


def test_an_input_name_with_a_trailing_newline_is_not_a_name(
    write_template: Callable[[str, str], Path], catalog: Any
) -> None:
    path = write_template("follow", FOLLOW_UP.format(inputs='{"rows\\n": rows}'))
    with pytest.raises(TemplateError, match="input names"):
        load_template(path, catalog)


SIMPLE = """\
name: simple
version: 1
inputs:
  rows: {kind: table, default: rows.csv}
models: {worker: worker_model}
budget: {max_steps: 5, max_tokens: 1000, max_cost_usd: 1, max_fanout: 2}
steps:
  - {name: load, uses: acquire.read_table, with: {input: rows}}
  - {name: label, depends_on: [load], uses: classify_records, with: {field: text, labels: [a, b]}}
"""


def test_url_credentials_never_reach_the_job_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "simple.yaml").write_text(SIMPLE)
    monkeypatch.setenv("MARIGOLD_SGLANG_URL", "http://svc-user:hunter2-pass@127.0.0.1:1")
    monkeypatch.setenv("MARIGOLD_SGLANG_API_KEY", "sk-never-in-a-snapshot")
    job = build_defs(tmp_path).resolve_job_def("simple")
    snapshot = serialize_value(JobSnap.from_job_def(job))
    assert "hunter2-pass" not in snapshot and "svc-user" not in snapshot
    assert "sk-never-in-a-snapshot" not in snapshot


def test_run_data_is_owner_only_whatever_the_umask(tmp_path: Path) -> None:
    import pyarrow as pa

    previous = os.umask(0o022)
    try:
        folder = artifacts_dir(str(tmp_path / "storage"), "run-1")
        stored = store_value("load", pa.table({"secret": ["x"]}), folder)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(folder.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(Path(stored.payload.path).stat().st_mode) == 0o600


def test_previews_show_data_as_text_not_markup() -> None:
    rows = [{"name": "![pixel](http://127.0.0.1:9/b)", "note": "<img src=x> [a](javascript:x)"}]
    # Row previews are table metadata: the UI shows each cell as text, never as markdown.
    preview = output_summary(rows)["preview"]
    assert isinstance(preview, TableMetadataValue)
    assert preview.records[0].data == rows[0]
    # What is still markdown (dead-letter previews, the run summary) is escaped.
    escaped = markdown_text(rows[0]["name"])
    assert re.findall(r"(?<!\\)[<>\[\]!()]", escaped) == [], escaped
    assert markdown_text("a\nb | c") == r"a b \| c"

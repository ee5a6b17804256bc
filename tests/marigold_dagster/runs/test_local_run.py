"""`run_locally`: one valid template runs even when a neighbour in its folder is broken."""

from __future__ import annotations

from pathlib import Path

import pytest

from marigold_dagster.errors import TemplateError
from marigold_dagster.runs.local_run import run_locally

VALID = """\
name: tiny
version: 1
inputs:
  rows: {kind: table, default: rows.csv}
budget: {max_steps: 5, max_tokens: 100, max_cost_usd: 1, max_fanout: 4}
steps:
  - {name: load, uses: acquire.read_table, with: {input: rows}}
  - {name: counted, depends_on: [load], uses: aggregate.count}
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "rows.csv").write_text("id,label\n1,a\n2,b\n")
    (templates / "tiny.yaml").write_text(VALID)
    (templates / "broken.yaml").write_text("name: broken\nversion: 1\nsteps: []\n")
    return templates


def test_a_valid_template_runs_beside_a_broken_one_and_says_so(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    (tmp_path / "dagster.yaml").write_text("telemetry: {enabled: false}\n")
    done = run_locally("tiny", folder, project_dir=tmp_path)
    assert done.success, done.summary.render()
    assert len(done.broken_templates) == 1
    assert "broken.yaml" in done.broken_templates[0]


def test_the_broken_template_itself_is_refused_with_its_problems(folder: Path, tmp_path: Path):
    with pytest.raises(TemplateError, match="broken.yaml"):
        run_locally("broken", folder, project_dir=tmp_path)

"""definitions.py through the real `dagster` CLI: good templates validate, a broken one fails
with its file:line message."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
DAGSTER = Path(sys.executable).with_name("dagster")

pytestmark = pytest.mark.slow  # every test here starts a subprocess


def validate(templates_dir: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "MARIGOLD_TEMPLATES_DIR": str(templates_dir),
        "DAGSTER_HOME": str(tmp_path),
    }
    env.pop("MARIGOLD_SGLANG_URL", None)
    return subprocess.run(
        [str(DAGSTER), "definitions", "validate", "-f", "definitions.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_project_templates_validate(tmp_path: Path):
    done = validate(ROOT / "templates", tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Validation successful" in done.stdout + done.stderr


def test_a_broken_template_fails_validation_with_file_and_line(tmp_path: Path):
    templates = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", templates)
    broken = templates / "broken.yaml"
    broken.write_text(
        "name: broken\nversion: 1\n"
        "budget: {max_steps: 5, max_tokens: 10, max_cost_usd: 1, max_fanout: 2}\n"
        "steps:\n"
        "  - name: load\n"
        "    uses: acquire.read_tabel\n"
    )
    done = validate(templates, tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert f"{broken}:6: steps[0].uses: capability `acquire.read_tabel` not found" in output
    assert "Did you mean `acquire.read_table`" in output


# Small enough that one process per step stays quick, with every shape the executor must
# reconstruct in a fresh process: a static step, a batch's dynamic chunks and their merge.
SUBPROCESS_TEMPLATE = """\
name: subprocess_review
version: 1
inputs:
  contracts: {kind: table, default: data/contracts.csv}
models: {worker: worker_model}
budget: {max_steps: 10, max_tokens: 200000, max_cost_usd: 1.0, max_fanout: 8}
steps:
  - name: load
    uses: acquire.read_table
    with: {input: contracts}
  - name: triage
    kind: batch
    depends_on: [load]
    batch: {size: 120, failure_strategy: isolate}
    uses: classify_records
    with: {field: text, labels: [low, medium, high], output_field: risk}
  - name: summary
    depends_on: [triage]
    uses: aggregate.count
    with: {by: [risk]}
"""


def test_dagster_cli_executes_a_template_in_subprocesses(tmp_path: Path):
    """`dagster job execute` reconstructs the job from definitions.py in each step's process."""
    templates = tmp_path / "templates"
    shutil.copytree(ROOT / "templates" / "data", templates / "data")
    (templates / "subprocess_review.yaml").write_text(SUBPROCESS_TEMPLATE)
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    # Template jobs run in process by default; a launch may still choose the multiprocess executor.
    multiprocess = tmp_path / "multiprocess.yaml"
    multiprocess.write_text("execution:\n  config:\n    multiprocess: {}\n")
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "MARIGOLD_TEMPLATES_DIR": str(templates)}
    env.pop("MARIGOLD_SGLANG_URL", None)
    done = subprocess.run(
        [
            *(str(DAGSTER), "job", "execute", "-f", "definitions.py", "-j", "subprocess_review"),
            *("-c", str(multiprocess)),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "RUN_SUCCESS" in output
    assert 'Launching subprocess for "triage[rows_0_119]"' in output
    assert 'Launching subprocess for "triage__merge"' in output

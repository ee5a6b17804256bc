"""The `marigold` command line, run as a user runs it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[3]
MARIGOLD = Path(sys.executable).with_name("marigold")

pytestmark = pytest.mark.slow  # every test here starts a subprocess


def marigold(*args: str, cwd: Path, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "MARIGOLD_SGLANG_URL")}
    if home is not None:
        env["DAGSTER_HOME"] = str(home)
    return subprocess.run(
        [str(MARIGOLD), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_run_flagship_prints_summary_result_and_where_to_look(tmp_path: Path):
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    shutil.copy(ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    done = marigold("run", "contract_review", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "of 'contract_review': SUCCESS" in out
    assert "triage" in out and "6 chunks, 240 of 240 rows out, 0 failed" in out
    assert "chose: deep_review, summary" in out
    assert re.search(r"\d+ planned steps run in 1 phase\(s\)", out), out
    assert "Result of 'finalize':" in out
    assert "NO MODEL SERVER is in use" in done.stderr
    assert f"See it in the UI: DAGSTER_HOME={tmp_path} {MARIGOLD.with_name('dagster')} dev" in out
    assert (tmp_path / ".dagster_home" / "storage").is_dir(), "runs persist in the SQLite instance"


def test_run_with_a_missing_input_file_fails_before_anything_runs(tmp_path: Path):
    done = marigold(
        "run",
        "contract_review",
        "--templates-dir",
        str(ROOT / "templates"),
        "--input",
        f"contracts={ROOT / 'templates' / 'data' / 'nope.csv'}",
        cwd=tmp_path,
        home=tmp_path,
    )
    assert done.returncode == 1
    assert "input 'contracts' of template 'contract_review' must be a file" in done.stdout
    assert "load" in done.stdout and "failed" in done.stdout


def test_validate_lists_each_problem_and_exits_non_zero(tmp_path: Path):
    (tmp_path / "bad.yaml").write_text("name: bad\nversion: 1\nsteps: []\n")
    done = marigold("validate", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 1
    assert f"{tmp_path / 'bad.yaml'}:1: budget: required field `budget` is missing" in done.stderr
    assert "steps:" in done.stderr


def test_validate_reports_a_bad_trigger_like_any_other_problem(tmp_path: Path):
    text = (ROOT / "templates" / "contract_digest.yaml").read_text()
    assert 'cron: "0 2 * * *"' in text
    (tmp_path / "contract_digest.yaml").write_text(text.replace("0 2 * * *", "0 2 30 2 *"))
    done = marigold("validate", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 1
    assert re.search(
        r"contract_digest\.yaml:\d+: triggers\.schedule\.cron: .*\[INVALID_CRON\]", done.stderr
    )


def test_validate_of_a_folder_without_templates_says_so_and_fails(tmp_path: Path):
    done = marigold("validate", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 1
    assert f"no templates in {tmp_path}" in done.stderr


@pytest.mark.integration  # the machine's PostgreSQL answers that the database does not exist
def test_an_instance_whose_database_does_not_exist_is_a_one_line_error(tmp_path: Path):
    url = "postgresql+psycopg2://postgres:hunter2@127.0.0.1:5432/marigold_no_such_database"
    (tmp_path / "dagster.yaml").write_text(f"storage:\n  postgres:\n    postgres_url: {url}\n")
    done = marigold("runs", cwd=tmp_path, home=tmp_path)
    assert done.returncode == 1, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == [line for line in done.stderr.splitlines() if not line.startswith("note:")]
    assert len(errors) == 1 and "Traceback" not in done.stderr and "Retrying" not in done.stderr
    assert errors[0].startswith(f"error: cannot open the Dagster instance of {tmp_path}")
    assert "marigold_no_such_database" in done.stderr and "hunter2" not in done.stderr


def test_validate_passes_on_the_project_templates():
    done = marigold("validate", "templates", cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "ok  templates/contract_review.yaml" in done.stdout


def test_plan_dry_run_prints_the_fragment_its_validation_and_estimate():
    done = marigold("plan", "contract_review", "--dry-run", cwd=ROOT)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "dry run of planning step 'deep_review' in 'contract_review' (nothing executed)" in out
    assert "digest of 'route' (by the model, in the prompt): contract_id: C0001;" in out
    assert "attempt 1: accepted" in out
    assert "depth 2: s2_extract_fields = extract_fields after s1_transform_filter" in out
    assert re.search(r"estimate: \d+ steps, ~", out), out
    assert '"uses": "extract_fields"' in out


def test_plan_without_dry_run_is_refused():
    done = marigold("plan", "contract_review", cwd=ROOT)
    assert done.returncode == 1
    assert "only --dry-run is supported" in done.stderr


def test_capabilities_prints_a_tier_and_its_token_count():
    done = marigold("capabilities", "--tier", "1", cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "classify_records" in done.stdout
    assert "# tier 1:" in done.stderr and "tokens" in done.stderr


@pytest.mark.slow
def test_a_run_paused_at_a_gate_says_how_to_approve_and_exits_3_without_errors(tmp_path: Path):
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    shutil.copy(ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    done = marigold("run", "contract_signoff", cwd=tmp_path)
    assert done.returncode == 3, done.stdout + done.stderr
    printed = done.stdout + done.stderr
    assert "Paused at gate 'sign_off', waiting for a decision" in done.stdout
    assert "marigold approve " in done.stdout and "--step sign_off" in done.stdout
    for noise in ("Traceback", "STEP_FAILURE", " - ERROR - "):
        assert noise not in printed, printed


@pytest.mark.slow
def test_a_failed_run_names_its_cause_once_without_tracebacks(tmp_path: Path):
    bad = tmp_path / "nope.csv"
    args = ("run", "contract_review", "--templates-dir", str(ROOT / "templates"))
    done = marigold(*args, "--input", f"contracts={bad}", cwd=tmp_path, home=tmp_path)
    assert done.returncode == 1
    printed = done.stdout + done.stderr
    assert printed.count("outside the input roots") == 1, printed  # the cause, once
    assert "Traceback" not in printed and "STEP_FAILURE" not in printed, printed
    verbose = marigold(
        *args, "--input", f"contracts={bad}", "--verbose", cwd=tmp_path, home=tmp_path
    )
    assert " - dagster - DEBUG - " in verbose.stderr, verbose.stderr  # Dagster's own log, shown


def test_help_imports_neither_dagster_nor_pandas():
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from marigold_dagster.cli import main\n"
        "result = CliRunner().invoke(main, ['--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        "print(sorted(m for m in ('dagster', 'pandas', 'grammar_ops') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_lazy_commands_show_their_own_help():
    import click

    from marigold_dagster.cli.main import _LazyGroup, main

    ctx = click.Context(main)
    for name, (_, shown) in _LazyGroup.lazy.items():
        command = main.get_command(ctx, name)
        assert command is not None and command.name == name
        assert command.get_short_help_str(limit=200) == shown

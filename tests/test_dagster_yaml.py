"""The project's dagster.yaml: the SQLite default works, and the documented PostgreSQL block
works against the machine's PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from dagster import DagsterInstance, job, op

ROOT = Path(__file__).parents[1]
BEGIN, END = "# --- postgres storage ---", "# --- end postgres storage ---"


@op
def hello() -> int:
    return 1


@job
def probe() -> None:
    hello()


def documented_postgres_block() -> str:
    text = (ROOT / "dagster.yaml").read_text()
    block = text[text.index(BEGIN) + len(BEGIN) : text.index(END)]
    return "\n".join(line.removeprefix("# ") for line in block.strip().splitlines())


def test_default_is_sqlite_with_telemetry_off():
    config = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    assert "sqlite" in config["storage"]
    assert config["telemetry"] == {"enabled": False}


@pytest.mark.integration
def test_documented_postgres_block_stores_runs_in_postgres(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    default = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    for key in ("storage", "local_artifact_storage", "compute_logs"):
        default.pop(key)
    config = {**default, **yaml.safe_load(documented_postgres_block())}
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("MARIGOLD_POSTGRES_URL", postgres_url)
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        result = probe.execute_in_process(instance=instance)
        assert result.success
        assert instance.get_run_by_id(result.run_id).is_success

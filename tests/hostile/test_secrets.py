"""Secrets: an API key given through `EnvVar` is used on every model call and written nowhere.

A planning template runs on a persistent instance (a temporary DAGSTER_HOME with SQLite storage
and a local compute log manager) against the SGLang test server started with `--api-key`, so
every call must carry the key. Afterwards the run's whole event log (every record, serialized),
the run record, the compute log files and every other file under DAGSTER_HOME are searched for
the key, and nothing is found.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster import serialize_value
from dagster._core.storage.local_compute_log_manager import LocalComputeLogManager

from harness.scripted_planner import TEMPLATE, ScriptedPlanner, fragment, step
from marigold_dagster.jobs.compiler import compile_frame
from marigold_dagster.template.loader import load_template
from resources.sglang import SGLangResource
from resources.sglang_test_server import SGLangTestServer

API_KEY = "sk-marigold-secret-9f4c2e7a51d84b06"
KEY_VAR = "MARIGOLD_HOSTILE_SECRET_KEY"


def instance_yaml(home: Path) -> str:
    return (
        "compute_logs:\n"
        "  module: dagster._core.storage.local_compute_log_manager\n"
        "  class: LocalComputeLogManager\n"
        f"  config: {{base_dir: {home / 'compute_logs'}}}\n"
        "telemetry: {enabled: false}\n"
    )


def test_an_env_var_api_key_is_used_and_never_recorded(
    catalog: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture
) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(instance_yaml(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv(KEY_VAR, API_KEY)

    script = ScriptedPlanner()
    # The planner call and one worker call per row all carry the key.
    script.answers[:] = [
        fragment(step("mark_all", "t.mark"), step("ask", "t.ask_each", ["mark_all"]))
    ]
    path = tmp_path / "planned.yaml"
    path.write_text(
        TEMPLATE.format(rows=3, max_depth=2, max_phases=1, max_steps=30, max_tokens=200_000)
    )
    frame = load_template(path, catalog)
    with SGLangTestServer(model="planner-double", responder=script, api_key=API_KEY) as server:
        # Without the key the server refuses: the key is what lets the run through.
        refused = SGLangResource(base_url=server.url, model="planner-double", retry_max_attempts=1)
        with pytest.raises(Exception, match="the server requires an API key"):
            with refused.yield_for_execution(dg.build_init_resource_context()):
                pass

        model = SGLangResource(
            base_url=server.url,
            model="planner-double",
            api_key=dg.EnvVar(KEY_VAR),
            log_prompts=True,
            retry_max_attempts=2,
            retry_backoff_base_s=0.01,
        )
        job = compile_frame(frame, resource_defs={"planner_model": model, "worker_model": model})
        with dg.DagsterInstance.get() as instance:
            assert instance.is_persistent
            result = job.execute_in_process(instance=instance, raise_on_error=False)
            assert result.success
            stats = server.stats()
            records = instance.get_records_for_run(result.run_id, limit=100_000).records
            run = instance.get_run_by_id(result.run_id)
            serialized = [serialize_value(record.event_log_entry) for record in records]
            serialized.append(serialize_value(run))
            logs = instance.compute_log_manager
    assert stats.prompts_received >= 4 and set(stats.status_counts) == {200}

    assert len(records) > 20 and any('"STEP_START"' in text for text in serialized)
    for text in serialized:
        assert API_KEY not in text

    files = [p for p in home.rglob("*") if p.is_file()]
    compute_logs = [p for p in files if p.suffix in {".out", ".err", ".complete"}]
    assert compute_logs, f"no compute log files were written under {home}"
    assert isinstance(logs, LocalComputeLogManager)
    for file in files:
        assert API_KEY.encode() not in file.read_bytes(), f"the key is in {file}"

    out, err = capfd.readouterr()
    assert API_KEY not in out and API_KEY not in err

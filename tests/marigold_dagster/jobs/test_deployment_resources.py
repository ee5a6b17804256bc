"""Launch config cannot repoint models, secrets or storage: the deployment fixes them.

A launcher's run config that sets a model resource's `base_url` or `api_key`, its prices, or the
IO manager's `base_dir` is refused by config validation before any resource starts, so no
request reaches the launcher's URL nor the deployment's server; without such config the run
uses the deployment's values, an `EnvVar` API key included.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from pydantic import ValidationError

from marigold_dagster.jobs.definitions import build_defs
from marigold_dagster.jobs.deployment_resources import fixed_by_deployment
from resources.offline_model import OfflineModel
from resources.sglang_test_server import SGLangTestServer
from tests.support.counting_server import CountingServer, counting_server
from tests.support.triage_template import TRIAGE_TEMPLATE


@pytest.fixture
def launcher_server() -> Iterator[CountingServer]:
    """A URL of the launcher's choice, recording every request it gets."""
    with counting_server() as running:
        yield running


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "triage.yaml").write_text(TRIAGE_TEMPLATE)
    (folder / "rows.csv").write_text("text\nlate payment penalty\nnothing unusual\n")
    return folder


LAUNCH_OVERRIDES = {
    "base_url": {"base_url": "LAUNCHER"},
    "api_key": {"api_key": {"env": "UNRELATED_SECRET"}},
    "price_per_1m_prompt_tokens": {"price_per_1m_prompt_tokens": 0.0},
}


@pytest.mark.parametrize("setting", sorted(LAUNCH_OVERRIDES))
def test_run_config_cannot_repoint_a_model_resource(
    setting: str,
    templates: Path,
    launcher_server: CountingServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    launcher_url = launcher_server.url
    with SGLangTestServer(model="m", api_key="sk-deployment") as deployed:
        monkeypatch.setenv("MARIGOLD_SGLANG_URL", deployed.url)
        monkeypatch.setenv("MARIGOLD_SGLANG_API_KEY", "sk-deployment")
        monkeypatch.setenv("UNRELATED_SECRET", "the-database-password")
        job = build_defs(templates).resolve_job_def("triage")
        config = {
            k: (launcher_url if v == "LAUNCHER" else v)
            for k, v in LAUNCH_OVERRIDES[setting].items()
        }
        with pytest.raises(dg.DagsterInvalidConfigError) as refused:
            job.execute_in_process(
                run_config={"resources": {"worker_model": {"config": config}}},
                instance=dg.DagsterInstance.ephemeral(),
            )
        assert f'unexpected config entry "{setting}"' in str(refused.value)
        assert deployed.stats().prompts_received == 0
    assert launcher_server.hits == []


def test_run_config_cannot_move_the_io_manager(templates: Path, tmp_path: Path) -> None:
    job = build_defs(templates, resources={"worker_model": OfflineModel()}).resolve_job_def(
        "triage"
    )
    planted = tmp_path / "launcher_folder"
    with pytest.raises(dg.DagsterInvalidConfigError, match='unexpected config entry "base_dir"'):
        job.execute_in_process(
            run_config={"resources": {"io_manager": {"config": {"base_dir": str(planted)}}}},
            instance=dg.DagsterInstance.ephemeral(),
        )
    assert not planted.exists()


def test_without_launch_config_the_deployment_values_are_used(
    templates: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with SGLangTestServer(model="m", api_key="sk-deployment") as deployed:
        monkeypatch.setenv("MARIGOLD_SGLANG_URL", deployed.url)
        monkeypatch.setenv("MARIGOLD_SGLANG_API_KEY", "sk-deployment")
        job = build_defs(templates).resolve_job_def("triage")
        result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral())
        assert result.success
        assert deployed.stats().prompts_received == 2  # one per row, with the deployment's key


def test_a_pinned_resource_keeps_its_values_and_reads_env_vars_when_it_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PINNED_NAME", "from-the-environment")
    pinned = fixed_by_deployment("model", OfflineModel(name=dg.EnvVar("PINNED_NAME")))
    seen: list[str] = []

    @dg.op(required_resource_keys={"model"})
    def look(context) -> None:  # type: ignore[no-untyped-def]
        seen.append(context.resources.model.name)

    @dg.job(resource_defs={"model": pinned})
    def probe() -> None:
        look()

    assert probe.execute_in_process().success
    assert seen == ["from-the-environment"]
    with pytest.raises(dg.DagsterInvalidConfigError, match='unexpected config entry "name"'):
        probe.execute_in_process(run_config={"resources": {"model": {"config": {"name": "x"}}}})


def test_a_resource_value_out_of_range_fails_when_definitions_load(
    templates: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MARIGOLD_SGLANG_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("MARIGOLD_SGLANG_BATCH_SIZE", "0")
    with pytest.raises(ValidationError, match=r"batch_size\n.*greater than or equal to 1"):
        build_defs(templates)

"""Through GraphQL `launchRun`, as the Launchpad sends it, a run config that repoints a model
resource or the IO manager is refused by the webserver: no run is created and no request
reaches the deployment's model server nor the launcher's URL.

The webserver serves a templates folder whose job binds `worker_model` to `SGLangResource`
(`MARIGOLD_SGLANG_URL` set to a recording server standing for the deployment's model server).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.deployment import LAUNCH_RUN, DagsterDeployment
from tests.support.counting_server import counting_server
from tests.support.triage_template import TRIAGE_TEMPLATE


@pytest.mark.slow
def test_graphql_launch_with_resource_or_io_manager_config_is_refused(
    postgres_url: str, tmp_path: Path
) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "triage.yaml").write_text(TRIAGE_TEMPLATE)
    (templates / "rows.csv").write_text("text\nlate payment penalty\n")
    with counting_server() as deployed, counting_server() as launcher:
        env = {
            "MARIGOLD_SGLANG_URL": deployed.url,
            "MARIGOLD_SGLANG_API_KEY": "sk-deployment",
            "UNRELATED_SECRET": "the-database-password",
        }
        with DagsterDeployment.start(
            tmp_path / "home", postgres_url, templates_dir=templates, env=env, daemon=False
        ) as deployment:
            # The PostgreSQL database is shared by the test session: count only runs made here.
            with deployment.instance() as instance:
                runs_before = instance.get_runs_count()
            attempts: dict[str, dict[str, Any]] = {
                "base_url": {"worker_model": {"config": {"base_url": launcher.url}}},
                "api_key": {"worker_model": {"config": {"api_key": {"env": "UNRELATED_SECRET"}}}},
                "base_dir": {"io_manager": {"config": {"base_dir": str(tmp_path / "planted")}}},
            }
            for setting, resources in attempts.items():
                params = {
                    "selector": deployment.job_selector("triage"),
                    "runConfigData": {"resources": resources},
                    "executionMetadata": {"tags": []},
                }
                answer = deployment.graphql(LAUNCH_RUN, {"executionParams": params})["launchRun"]
                assert answer["__typename"] == "RunConfigValidationInvalid", answer
                messages = " ".join(error["message"] for error in answer["errors"])
                assert f'unexpected config entry "{setting}"' in messages
            with deployment.instance() as instance:
                assert instance.get_runs_count() == runs_before
    assert deployed.hits == []
    assert launcher.hits == []

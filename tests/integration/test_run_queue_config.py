"""The run queue, pools and run monitoring block of dagster.yaml loads on a PostgreSQL instance."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from dagster import DagsterInstance

from harness.deployment import documented_run_queue_block, instance_config


@pytest.mark.integration
def test_documented_run_queue_block_configures_queue_and_pools(postgres_url: str, tmp_path: Path):
    block = documented_run_queue_block()
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(instance_config(postgres_url)))
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        config = instance.get_concurrency_config()
        runs = block["concurrency"]["runs"]
        assert config.run_queue_config.max_concurrent_runs == runs["max_concurrent_runs"]
        assert config.run_queue_config.tag_concurrency_limits == runs["tag_concurrency_limits"]
        assert (
            config.pool_config.default_pool_limit == block["concurrency"]["pools"]["default_limit"]
        )
        monitoring = block["run_monitoring"]
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_start_timeout_seconds == monitoring["start_timeout_seconds"]
        assert instance.run_monitoring_max_runtime_seconds == monitoring["max_runtime_seconds"]
        assert (
            instance.run_monitoring_settings["free_slots_after_run_end_seconds"]
            == monitoring["free_slots_after_run_end_seconds"]
        )


def test_documented_run_queue_block_limits_runs_per_template():
    limits = documented_run_queue_block()["concurrency"]["runs"]["tag_concurrency_limits"]
    assert {"key": "marigold/template", "value": {"applyLimitPerUniqueValue": True}} in [
        {k: v for k, v in limit.items() if k != "limit"} for limit in limits
    ]

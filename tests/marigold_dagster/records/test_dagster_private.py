"""The private Dagster APIs the platform uses still look the way it uses them.

If a Dagster upgrade moves or changes one, these fail first, naming what to adapt in
`marigold_dagster.records.dagster_private` (and in `keys.RETRY_ON_FAILURE_TAG`).
"""

from __future__ import annotations

import inspect

import dagster
from dagster import DagsterInstance, MetadataValue, job, op

from marigold_dagster.keys import RETRY_ON_FAILURE_TAG
from marigold_dagster.records import dagster_private

PINNED = "1.13.27"


def test_dagster_is_the_pinned_version():
    assert dagster.__version__ == PINNED, (
        f"Dagster {dagster.__version__} is installed, {PINNED} is what "
        "marigold_dagster.records.dagster_private was checked against: rerun these tests and "
        "adapt that module before moving the pin"
    )


def test_resume_retry_reexecution_takes_instance_and_parent_run():
    from dagster._core.execution.plan.state import KnownExecutionState

    parameters = inspect.signature(KnownExecutionState.build_resume_retry_reexecution).parameters
    assert list(parameters) == ["instance", "parent_run"]


def test_engine_event_data_takes_metadata():
    from dagster._core.events import EngineEventData

    assert "metadata" in inspect.signature(EngineEventData).parameters
    data = dagster_private.engine_event_data({"note": MetadataValue.text("x")})
    assert isinstance(data, EngineEventData)
    assert data.metadata["note"] == MetadataValue.text("x")


def test_pythonic_config_values_keep_env_vars_as_references():
    from dagster import EnvVar, FilesystemIOManager

    from resources.sglang import SGLangResource

    resource = SGLangResource(base_url="http://gpu-1:30000", api_key=EnvVar("SOME_KEY"))
    values = dagster_private.pythonic_config_values(resource)
    assert values is not None
    assert values["base_url"] == "http://gpu-1:30000"
    assert values["api_key"] == {"env": "SOME_KEY"}, "the variable's name, never its value"
    assert dagster_private.pythonic_config_values(FilesystemIOManager(base_dir="/x")) == {
        "base_dir": "/x"
    }
    assert dagster_private.pythonic_config_values(object()) is None


def test_retry_tag_is_dagsters_own():
    from dagster._core.storage.tags import RETRY_ON_ASSET_OR_OP_FAILURE_TAG

    assert RETRY_ON_FAILURE_TAG == RETRY_ON_ASSET_OR_OP_FAILURE_TAG


def test_from_failure_step_keys_names_the_failed_step():
    @op
    def fine() -> int:
        return 1

    @op
    def broken(value: int) -> int:
        raise RuntimeError("boom")

    @job
    def two_steps() -> None:
        broken(fine())

    with DagsterInstance.ephemeral() as instance:
        result = two_steps.execute_in_process(instance=instance, raise_on_error=False)
        run = instance.get_run_by_id(result.run_id)
        assert run is not None
        assert dagster_private.from_failure_step_keys(instance, run) == ["broken"]


def test_the_definitions_load_context_says_when_a_job_is_reconstructed():
    from dagster._core.definitions.definitions_load_context import (
        DefinitionsLoadContext,
        DefinitionsLoadType,
    )

    assert {"is_set", "get", "scoped"} <= set(vars(DefinitionsLoadContext))
    assert DefinitionsLoadType.RECONSTRUCTION is not DefinitionsLoadType.INITIALIZATION
    assert isinstance(dagster_private.dagster_reconstructing_job(), bool)

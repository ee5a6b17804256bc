"""The private Dagster APIs the platform cannot do without, in one place.

- `KnownExecutionState.build_resume_retry_reexecution`: the steps re-execution from failure
  would run for a run (what the UI's "from failure" button computes); no public API says so.
- `EngineEventData`: the metadata of an engine event in a run's log; the public
  `DagsterInstance.report_engine_event` takes this private type.
- `ConfigurableResourceFactory._convert_to_config_dictionary`: the config values a pythonic
  resource or IO manager was given (an `EnvVar` as `{"env": NAME}`), which
  `jobs.deployment_resources` pins so that no launch can override them.
- `DefinitionsLoadContext`: whether Dagster is loading definitions to reconstruct a job (a run
  or step worker) or to initialise a code location; a worker then needs one job only.

`tests/marigold_dagster/records/test_dagster_private.py` checks them against the installed
Dagster, so an upgrade that changes them fails there, by name, rather than in a run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster import DagsterInstance, DagsterRun
from dagster._config.pythonic_config import ConfigurableResourceFactory
from dagster._core.definitions.definitions_load_context import (
    DefinitionsLoadContext,
    DefinitionsLoadType,
)
from dagster._core.events import EngineEventData
from dagster._core.execution.plan.state import KnownExecutionState


def dagster_reconstructing_job() -> bool:
    """Whether Dagster's current definitions load reconstructs a job from its code pointer.

    Dagster leaves the load context set once a process has reconstructed a job, so this stays
    true in that process afterwards.
    """
    return (
        DefinitionsLoadContext.is_set()
        and DefinitionsLoadContext.get().load_type is DefinitionsLoadType.RECONSTRUCTION
    )


def engine_event_data(metadata: Mapping[str, Any]) -> EngineEventData:
    """Engine-event data carrying `metadata`, for `DagsterInstance.report_engine_event`."""
    return EngineEventData(metadata=dict(metadata))


def from_failure_step_keys(instance: DagsterInstance, run: DagsterRun) -> list[str]:
    """The step keys re-execution of `run` from failure would run, by Dagster's own reckoning."""
    step_keys, _ = KnownExecutionState.build_resume_retry_reexecution(
        instance=instance, parent_run=run
    )
    return list(step_keys)


def pythonic_config_values(resource: object) -> dict[str, Any] | None:
    """The config values of a pythonic resource or IO manager, as Dagster passes them to its
    resource definition; None for anything else."""
    if not isinstance(resource, ConfigurableResourceFactory):
        return None
    return dict(resource._convert_to_config_dictionary())  # noqa: SLF001

"""Resources fixed by the deployment: bound in the definitions, never set by a launch.

Dagster treats the values a `ConfigurableResource` is given in `Definitions` as defaults that run
config (the Launchpad, GraphQL `launchRun`, `dagster job execute -c`) may override, `EnvVar`
fields included. A model resource's URL, API key and prices, and the IO manager's folder, decide
where prompts, secrets and pickled outputs go, so a launcher must not choose them.
`fixed_by_deployment` binds a resource with exactly the values the deployment gave it and a run
config schema with no fields: a launch that sets any of them is refused by Dagster's config
validation, in the webserver before a run exists or in `execute_in_process` before any resource
starts, with an error naming the setting (`Received unexpected config entry "base_url" at path
root:resources:worker_model:config`).

    >>> fixed_by_deployment("worker_model", SGLangResource(base_url="http://gpu-1:30000"))
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster import ResourceDefinition

from marigold_dagster.records.dagster_private import pythonic_config_values

FIXED_NOTE = (
    "Fixed by the deployment (environment, dagster.yaml, definitions); run config cannot set "
    "any of its settings."
)


def fixed_by_deployment(key: str, resource: Any) -> Any:
    """`resource` bound with the values the deployment gave it, and no launch-settable config.

    A pythonic resource or IO manager (`ConfigurableResource`, `FilesystemIOManager`) keeps its
    values (an `EnvVar` is still read in the worker, from the variable the deployment named);
    a function-based `ResourceDefinition` keeps its config defaults. Anything else (a plain
    object) already takes no config and is returned as it is.
    """
    values = pythonic_config_values(resource)
    if values is not None:
        return _pinned(key, resource.get_resource_definition(), values)
    if isinstance(resource, ResourceDefinition):
        return _pinned(key, resource, {})
    return resource


def fixed_resources(resources: Mapping[str, Any]) -> dict[str, Any]:
    """Every resource in `resources` fixed by the deployment (see `fixed_by_deployment`)."""
    return {key: fixed_by_deployment(key, resource) for key, resource in resources.items()}


def _pinned(key: str, definition: ResourceDefinition, values: Mapping[str, Any]) -> Any:
    frozen = dict(values)

    def config_fn(_launch_config: Any) -> dict[str, Any]:
        return dict(frozen)

    description = f"`{key}`: {FIXED_NOTE}"
    return definition.configured(config_fn, config_schema={}, description=description)


__all__ = ["FIXED_NOTE", "fixed_by_deployment", "fixed_resources"]

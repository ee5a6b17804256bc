"""A module-level job builder, so tests can run a compiled template through `execute_job`
(which needs a reconstructable job) and re-execute it from failure."""

from __future__ import annotations

from pathlib import Path

from dagster import JobDefinition

from grammar_ops import standard_catalog
from marigold_dagster.jobs.compiler import compile_frame
from marigold_dagster.template.loader import load_template
from resources.sglang import SGLangResource
from tests.support.capabilities import TEST_CAPABILITIES


def planned_job(template_path: str, server_url: str) -> JobDefinition:
    """The job of the template at `template_path`, its models on the server at `server_url`."""
    frame = load_template(Path(template_path), standard_catalog().extended(TEST_CAPABILITIES))
    model = SGLangResource(base_url=server_url, model="planner-double")
    return compile_frame(frame, resource_defs={"planner_model": model, "worker_model": model})


def template_job(templates_dir: str, name: str) -> JobDefinition:
    """Template `name`'s job as the deployment's definitions build it (models bound by the
    environment, executor chosen by it), compiled once per process."""
    from marigold_dagster.jobs import definitions

    return definitions.template_job(definitions.template_paths(templates_dir)[name])

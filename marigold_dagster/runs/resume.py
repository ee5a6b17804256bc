"""Resuming a run paused at a gate (re-executing the gate and what follows it) or a failed run
(its worker killed, say: re-execution from failure).

The job is rebuilt from the project's definitions file (the same `definitions.py` that
`dagster dev` loads, so the same templates, catalog and resources), through a reconstructable
pointer to `definitions_job`, and re-executed from failure with `execute_job`: the steps that
succeeded are not run again (their outputs are loaded from the failed run's storage), and a
re-executed gate acts on the recorded decision. This is what the UI's
"Re-execute from failure" button does for a run launched there.

    >>> resumed = resume_run(instance, run_id, Path("definitions.py"))
    >>> resumed.success
    True
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dagster import (
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    Definitions,
    JobDefinition,
    ReexecutionOptions,
    RepositoryDefinition,
    build_reconstructable_job,
    execute_job,
)

from marigold_dagster.errors import MarigoldError
from marigold_dagster.jobs.definitions import every_definition, reconstructing_one_job
from marigold_dagster.jobs.executors import CELERY_EXECUTOR
from marigold_dagster.jobs.model_binding import SGLANG_URL_ENV, model_backend
from marigold_dagster.keys import MODEL_BACKEND_TAG, PAUSED_AT_GATE
from marigold_dagster.records.dagster_private import from_failure_step_keys

IN_PROCESS: dict[str, Any] = {"config": {"in_process": {}}}


@dataclass(frozen=True)
class ResumedRun:
    """The run a paused run was re-executed as."""

    parent_run_id: str
    run_id: str
    status: str
    paused_at: str | None = None  # the gate the resumed run stopped at, if one did

    @property
    def success(self) -> bool:
        return self.status == DagsterRunStatus.SUCCESS.value and self.paused_at is None


def load_definitions(definitions_file: str | Path) -> Definitions:
    """The `Definitions` object of a definitions file (its module-level `defs`, or the only one),
    with every job, sensor and schedule, even in a process that has reconstructed a job."""
    with every_definition():
        defs = _definitions_of(definitions_file, lazy=False)
    if not isinstance(defs, Definitions):
        raise MarigoldError(f"{definitions_file} must define one dagster.Definitions (`defs`)")
    return defs


def definitions_job(definitions_file: str, job_name: str) -> JobDefinition:
    """Job `job_name` of a definitions file, resources bound: the reconstructable entry point.

    Where Dagster reconstructs it (a run or step worker), only that job is compiled.
    """
    defs = _definitions_of(definitions_file, lazy=reconstructing_one_job())
    if isinstance(defs, RepositoryDefinition):
        return defs.get_job(job_name)
    return defs.resolve_job_def(job_name)


def _definitions_of(
    definitions_file: str | Path, *, lazy: bool
) -> Definitions | RepositoryDefinition:
    """The file's `defs` (or its only `Definitions`), its module run once per process and kind."""
    path = Path(definitions_file).resolve()
    if not path.is_file():
        raise MarigoldError(f"no definitions file {path}; pass the project's definitions.py")
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:12]
    name = f"_marigold_definitions_{digest}{'_lazy' if lazy else ''}"
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(path.parent))
        try:
            spec.loader.exec_module(module)
        finally:
            sys.path.remove(str(path.parent))
        sys.modules[name] = module
    defs = getattr(module, "defs", None)
    if isinstance(defs, Definitions | RepositoryDefinition):
        return defs
    found = [value for value in vars(module).values() if isinstance(value, Definitions)]
    if len(found) == 1:
        return found[0]
    raise MarigoldError(f"{path} must define one dagster.Definitions (e.g. `defs = ...`)")


def reconstructable_job(definitions_file: str | Path, job_name: str):
    """A pointer Dagster can rebuild job `job_name` from, in this process or another.

    A `ReconstructableJob`, as `build_reconstructable_job` returns it (Dagster does not export
    the type).
    """
    args = (str(Path(definitions_file).resolve()), job_name)
    return build_reconstructable_job(
        __name__,
        definitions_job.__name__,
        # Dagster annotates this `tuple[object]` (exactly one item); it takes any number.
        reconstructable_args=args,  # type: ignore[arg-type]
    )


def steps_left(instance: DagsterInstance, run_id: str) -> list[str]:
    """The step keys re-execution from failure would run for `run_id`, by Dagster's own reckoning.

    Empty when every step succeeded: a worker killed after its last step, before it recorded
    the run's success, leaves a run that failed with all of its work done.
    """
    run = instance.get_run_by_id(run_id)
    if run is None:
        raise MarigoldError(f"no run {run_id} in this Dagster instance")
    return from_failure_step_keys(instance, run)


def _check_model_backend(run: DagsterRun) -> None:
    """Refuse to resume a run on other models than those it ran on.

    Raises:
        MarigoldError: saying what the run used and what this process would bind.
    """
    ran_on = run.tags.get(MODEL_BACKEND_TAG)
    here = model_backend()
    if ran_on is not None and ran_on != here:
        hint = (
            f"set {SGLANG_URL_ENV} to the server it used"
            if ran_on.startswith("sglang")
            else f"unset {SGLANG_URL_ENV}"
        )
        raise MarigoldError(
            f"run {run.run_id} ran its models on {ran_on}, but this process would bind {here}; "
            f"a resumed run keeps the models of the run it resumes: {hint} and resume again"
        )


def resume_run(
    instance: DagsterInstance,
    run_id: str,
    definitions_file: str | Path,
    *,
    log_level: str | None = None,
) -> ResumedRun:
    """Resume run `run_id` in process, with its own run config: a run paused at a gate from
    the gate on (step selection `gate*`), a failed run from failure.

    `log_level` sets the console logger's level (the event log keeps everything regardless).

    Raises:
        MarigoldError: when there is no such run, it did not fail (only a failed run - one
            paused at a gate, say - can be re-executed from failure), or every step of it
            succeeded (there is nothing left to run; the run's own outputs are the result).
    """
    run = instance.get_run_by_id(run_id)
    if run is None:
        raise MarigoldError(f"no run {run_id} in this Dagster instance")
    gate = run.tags.get(PAUSED_AT_GATE) or ""
    if gate and run.status is DagsterRunStatus.SUCCESS:
        # a paused run: re-execute the gate and everything after it from the stored outputs
        _check_model_backend(run)
        options = ReexecutionOptions(parent_run_id=run_id, step_selection=[f"{gate}*"])
        return _reexecute(instance, run, definitions_file, options, log_level)
    if run.status is not DagsterRunStatus.FAILURE:
        raise MarigoldError(
            f"run {run_id} is {run.status.value} and not paused at a gate; only a failed run, or "
            "one paused at a gate, can be resumed"
        )
    _check_model_backend(run)
    if not steps_left(instance, run_id):
        raise MarigoldError(
            f"every step of run {run_id} succeeded, so there is nothing to re-execute: its "
            "worker stopped after the last step, before it recorded the run's success; the "
            "results are in that run's outputs"
        )
    options = ReexecutionOptions.from_failure(run_id, instance)
    return _reexecute(instance, run, definitions_file, options, log_level)


def reexecution_run_config(run_config: Mapping[str, Any], executor: str) -> dict[str, Any]:
    """The parent's run config, its steps in this process unless the job's executor is fixed
    by the deployment (Celery: the re-executed steps go to the workers, the broker unchanged)."""
    if executor == CELERY_EXECUTOR:
        return {key: value for key, value in run_config.items() if key != "execution"}
    return {**run_config, "execution": IN_PROCESS}


def _reexecute(
    instance: DagsterInstance,
    run: DagsterRun,
    definitions_file: str | Path,
    options: ReexecutionOptions,
    log_level: str | None,
) -> ResumedRun:
    job = reconstructable_job(definitions_file, run.job_name)
    run_config = reexecution_run_config(run.run_config, job.get_definition().executor_def.name)
    if log_level is not None:
        run_config["loggers"] = {"console": {"config": {"log_level": log_level}}}
    # As the UI's re-execution does, the new run keeps the parent run's own tags (its task's
    # correlation ids among them), not Dagster's system tags.
    tags = {key: value for key, value in run.tags.items() if not key.startswith("dagster/")}
    with execute_job(
        job, instance, run_config=run_config, tags=tags, reexecution_options=options
    ) as result:
        resumed = instance.get_run_by_id(result.run_id)
        status = resumed.status.value if resumed else ("SUCCESS" if result.success else "FAILURE")
        paused = resumed.tags.get(PAUSED_AT_GATE) or None if resumed else None
        return ResumedRun(run.run_id, result.run_id, status, paused)

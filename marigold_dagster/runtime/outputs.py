"""What every op body shares: materializations, failures, retries, artifacts and inputs.

The asset materialization a step records, the `Failure` for an error (retried under the step's
policy when `grammar_ops.is_transient` says retrying may fix it, failed at once otherwise), the
retry policy a step runs under and the tries of it run inside a step, the run-scoped folder
tables are written to, and the template input paths a step was launched with (checked to exist).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dagster import (
    AssetMaterialization,
    AssetObservation,
    Failure,
    MetadataValue,
    OpExecutionContext,
    RetryPolicy,
)
from dagster import Backoff as DagsterBackoff
from dagster import Jitter as DagsterJitter
from tenacity import Retrying, wait_none

from grammar_ops import is_transient
from grammar_ops.failures import failure_class
from grammar_ops.retrying import BeforeSleep, retrying, step_wait
from marigold_dagster import keys
from marigold_dagster.artifacts import artifacts_dir
from marigold_dagster.errors import InputOutsideRoots
from marigold_dagster.keys import STEP_COUNT_KEY, input_asset_key, step_asset_key
from marigold_dagster.runtime.error_text import without_file_content
from marigold_dagster.runtime.input_roots import confine_input
from marigold_dagster.template.frame import Frame, FrameStep
from marigold_dagster.template.model import RetrySpec


def materializations(frame: Frame, step: FrameStep, metadata: Mapping[str, Any]) -> list[Any]:
    """The step's asset materialization, when the template records one for this step.

    Each is one more event on the instance (a quarter more per step on SQLite), so by default
    only results are recorded: steps no other step consumes.
    """
    if not frame.materializes(step.name):
        return []
    return [
        AssetMaterialization(
            asset_key=step_asset_key(frame.name, step.name),
            metadata={k: v for k, v in metadata.items() if k != STEP_COUNT_KEY},
        )
    ]


def template_inputs(context: OpExecutionContext, frame: Frame, step: FrameStep) -> dict[str, str]:
    """The launch-supplied input paths of a step, checked before anything runs: each must
    resolve under an input root (`runtime.input_roots.confine_input`) and exist."""
    supplied: Mapping[str, str] = context.op_config or {}
    checked = {}
    storage = context.instance.storage_directory()
    for name, path in supplied.items():
        kind = frame.template.inputs[name].kind
        try:
            resolved = confine_input(frame, name, path, storage)
        except InputOutsideRoots as error:
            raise Failure(str(error), allow_retries=False) from None
        exists = os.path.isdir(resolved) if kind == "documents" else os.path.isfile(resolved)
        if not exists:
            what = "a folder" if kind == "documents" else "a file"
            raise Failure(
                f"input '{name}' of template '{frame.name}' must be {what}, but {resolved} "
                "does not exist; pass an existing path in the run config under "
                f"ops.{step.name}.config.{name}",
                allow_retries=False,
            )
        checked[name] = resolved
        # the run reads the input; it does not produce it: an observation, not a materialization
        context.log_event(
            AssetObservation(
                asset_key=input_asset_key(frame.name, name),
                metadata={keys.SOURCE_PATH_KEY: MetadataValue.path(resolved)},
            )
        )
    return checked


def step_failure(step: FrameStep, error: BaseException, *, what: str | None = None) -> Failure:
    """The Failure for `error`: retried under the step's `retry:` only when it is transient.

    A transient failure (model server unreachable or busy, timeout, storage I/O) lets Dagster's
    RetryPolicy try the step again (`STEP_UP_FOR_RETRY`); a permanent one (configuration,
    validation, a missing field, a bad answer) fails the step at once, with its cause. Its text
    never quotes a file's content (see `runtime.error_text`).
    """
    kind = failure_class(error)
    return Failure(
        description=f"{what or f'step {step.name!r}'} failed ({kind}): "
        f"{without_file_content(str(error))}",
        metadata={keys.ERROR_TYPE_KEY: type(error).__name__, keys.FAILURE_CLASS_KEY: kind},
        allow_retries=is_transient(error),
    )


def run_artifacts_dir(context: OpExecutionContext) -> Path:
    """The run-scoped folder a step writes its tables to."""
    return artifacts_dir(context.instance.storage_directory(), context.run_id)


def step_retrying(spec: RetrySpec | None, before_sleep: BeforeSleep | None = None) -> Retrying:
    """The tries of a step's `retry:` block run inside one step (a batch merge catching up
    chunks): a `Failure` that allows retries is tried again after the wait Dagster's RetryPolicy
    would take, with the template's backoff and jitter; any other error is raised at once."""

    def retryable(error: BaseException) -> bool:
        return isinstance(error, Failure) and error.allow_retries

    if spec is None:
        return retrying(1, wait_none(), retryable, before_sleep)
    wait = step_wait(spec.delay_s, spec.backoff, spec.jitter)
    return retrying(spec.max_attempts, wait, retryable, before_sleep)


def retry_policy(spec: RetrySpec | None) -> RetryPolicy | None:
    """The Dagster RetryPolicy for a template `retry:` block (None: no retries)."""
    if spec is None or spec.max_attempts <= 1:
        return None
    backoff = {"exponential": DagsterBackoff.EXPONENTIAL, "linear": DagsterBackoff.LINEAR}
    jitter = {"full": DagsterJitter.FULL, "plus_minus": DagsterJitter.PLUS_MINUS}
    if not spec.delay_s:  # no wait: Dagster refuses a backoff or jitter without a delay
        return RetryPolicy(max_retries=spec.max_attempts - 1)
    return RetryPolicy(
        max_retries=spec.max_attempts - 1,
        delay=spec.delay_s,
        backoff=backoff.get(spec.backoff),
        jitter=jitter.get(spec.jitter),
    )

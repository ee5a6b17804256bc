"""Which Dagster executor runs a template's steps, and which Celery queue each step goes to.

A template job runs in process by default: one process per run, steps one after another, each
model-bound step keeping the model server full through the model resource's bounded async
requests. Dagster's multiprocess executor pays an interpreter start, a Dagster import and a
definitions load per step (seconds each), which buys nothing for steps that wait on a model
server. `multiprocess` and `celery` are there for CPU-bound steps and for more than one machine:
a template chooses with `executor:`, a deployment with `MARIGOLD_EXECUTOR`; the template wins.

Under Celery, a step that calls a model goes to the queue named after its model resource key
(its first, sorted) and every other step to the default queue, both prefixed with
`MARIGOLD_CELERY_QUEUE_PREFIX`; the broker and result backend come from the deployment
(`MARIGOLD_CELERY_BROKER`, `MARIGOLD_CELERY_BACKEND`) and are fixed in the job, so launch run
config cannot point a run at another broker.

A step's Celery task is acknowledged when it finishes, not when a worker takes it
(`task_acks_late`): a worker that dies with a step in hand (machine lost, SIGKILL) leaves the
task on the broker, which gives it to another worker; the step runs again from its inputs and
writes the same outputs. A step whose own process dies while its worker lives is not handed
out again (`task_reject_on_worker_lost` stays off, so a step that kills its process cannot loop):
it fails, and the run resumes from failure. Workers must start with the same settings
(`celery_config`, which `marigold worker` writes for them).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from dagster import ExecutorDefinition, Field, multi_or_in_process_executor

from marigold_dagster.errors import MarigoldError

EXECUTOR_ENV = "MARIGOLD_EXECUTOR"
CELERY_BROKER_ENV = "MARIGOLD_CELERY_BROKER"
CELERY_BACKEND_ENV = "MARIGOLD_CELERY_BACKEND"
CELERY_QUEUE_PREFIX_ENV = "MARIGOLD_CELERY_QUEUE_PREFIX"

DEFAULT_EXECUTOR = "in_process"
EXECUTORS = ("in_process", "multiprocess", "celery")
DEFAULT_BROKER = "pyamqp://guest@127.0.0.1:5672//"
DEFAULT_BACKEND = "rpc://"
DEFAULT_QUEUE = "dagster"
CELERY_QUEUE_TAG = "dagster-celery/queue"
CELERY_EXECUTOR = "marigold_celery"
"""The name of the Celery executor definition a `celery` job gets."""
CELERY_TASK_SETTINGS = {"task_acks_late": True, "task_reject_on_worker_lost": False}


in_process_by_default = ExecutorDefinition(
    name="in_process_by_default",
    config_schema=Field(
        multi_or_in_process_executor.config_schema.config_type,
        default_value={"in_process": {}},
    ),
    requirements=multi_or_in_process_executor.get_requirements,
    executor_creation_fn=multi_or_in_process_executor.executor_creation_fn,
    description=(
        "Dagster's default executor with in_process as its default: run config "
        "`execution: {config: {multiprocess: {}}}` still selects one process per step."
    ),
)
"""Dagster's `multi_or_in_process_executor`, with the same config, defaulting to in process."""


def executor_name(template_choice: str | None, environ: Mapping[str, str] | None = None) -> str:
    """The template's choice, else the deployment's `MARIGOLD_EXECUTOR`, else `in_process`."""
    environ = os.environ if environ is None else environ
    name = template_choice or environ.get(EXECUTOR_ENV, "").strip() or DEFAULT_EXECUTOR
    if name not in EXECUTORS:
        raise MarigoldError(
            f"{EXECUTOR_ENV}={name!r} is not an executor; valid: {', '.join(EXECUTORS)}"
        )
    return name


def celery_config(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The Celery executor's config in this deployment, which its workers must share.

    >>> celery_config({})["config_source"]
    {'task_acks_late': True, 'task_reject_on_worker_lost': False}
    """
    environ = os.environ if environ is None else environ
    return {
        "broker": environ.get(CELERY_BROKER_ENV, "").strip() or DEFAULT_BROKER,
        "backend": environ.get(CELERY_BACKEND_ENV, "").strip() or DEFAULT_BACKEND,
        "config_source": dict(CELERY_TASK_SETTINGS),
    }


def executor_def(name: str, environ: Mapping[str, str] | None = None) -> ExecutorDefinition:
    """The Dagster executor definition for `name` (see `executor_name`)."""
    if name == "in_process":
        return in_process_by_default
    if name == "multiprocess":
        return multi_or_in_process_executor
    from dagster_celery import celery_executor  # imports Celery: only where it is used

    return celery_executor.configured(celery_config(environ), name=CELERY_EXECUTOR)


def celery_queue(model_keys: Iterable[str], environ: Mapping[str, str] | None = None) -> str:
    """The Celery queue of a step calling the models `model_keys` (none: the default queue)."""
    environ = os.environ if environ is None else environ
    prefix = environ.get(CELERY_QUEUE_PREFIX_ENV, "").strip()
    keys = sorted(model_keys)
    return f"{prefix}{keys[0] if keys else DEFAULT_QUEUE}"

"""The `marigold worker` command: a `dagster-celery` worker set up the way this deployment's jobs
send their steps.

It listens on the default queue and on one queue per model resource key the templates name
(each with `MARIGOLD_CELERY_QUEUE_PREFIX`, see `jobs.executors.celery_queue`), or on the queues
given with `-q`; it takes the broker, result backend and task settings (`task_acks_late`) from
the same `celery_config` the jobs' executor is built from, written to a YAML file under
`DAGSTER_HOME` for `dagster-celery worker start -y`. Then it becomes that command (`exec`), so
signals reach the worker itself.

    marigold worker                         # dagster, planner_model, worker_model
    marigold worker -q worker_model --concurrency 4
    marigold worker --dry-run               # print the command and its config, start nothing
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import click
import yaml

from marigold_dagster.errors import MarigoldError
from marigold_dagster.jobs.executors import (
    CELERY_QUEUE_PREFIX_ENV,
    DEFAULT_QUEUE,
    celery_config,
)
from marigold_dagster.template.loader import load_templates_apart

MAX_QUEUES = 4
"""dagster-celery refuses a worker on more than four queues."""
CONFIG_FILE = Path("marigold") / "celery_worker.yaml"


def worker_queues(
    model_keys: Iterable[str],
    chosen: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
) -> list[str]:
    """The `chosen` queues, else the default queue and one per model resource key; prefixed.

    >>> worker_queues(["worker_model", "planner_model"], environ={})
    ['dagster', 'planner_model', 'worker_model']
    """
    environ = os.environ if environ is None else environ
    prefix = environ.get(CELERY_QUEUE_PREFIX_ENV, "").strip()
    names = [q.strip() for q in chosen if q.strip()] or [DEFAULT_QUEUE, *sorted(set(model_keys))]
    return [f"{prefix}{name}" for name in dict.fromkeys(names)]


def worker_argv(
    queues: Sequence[str],
    config_yaml: Path,
    *,
    name: str | None = None,
    concurrency: int | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    """The `dagster-celery worker start` command line for a worker on `queues`.

    Raises:
        MarigoldError: when there are no queues, or more than dagster-celery accepts.
    """
    if not queues:
        raise MarigoldError("a worker needs at least one queue")
    if len(queues) > MAX_QUEUES:
        raise MarigoldError(
            f"a worker listens on at most {MAX_QUEUES} queues, not {len(queues)} "
            f"({', '.join(queues)}); start several workers, each with its own -q"
        )
    argv = [str(Path(sys.executable).parent / "dagster-celery"), "worker", "start"]
    argv += ["-A", "dagster_celery.app", "-y", str(config_yaml)]
    if name:
        argv += ["-n", name]
    # One -q, comma-separated: dagster-celery passes each -q on as Celery's -Q, and Celery keeps
    # only the last -Q it is given.
    argv += ["-q", ",".join(queues)]
    celery_args = [*(["--concurrency", str(concurrency)] if concurrency else []), *extra]
    return [*argv, "--", *celery_args] if celery_args else argv


def worker_config_yaml(environ: Mapping[str, str] | None = None) -> str:
    """The `-y` file's text: the executor config block the jobs run with."""
    return yaml.safe_dump({"execution": {"config": celery_config(environ)}}, sort_keys=True)


def write_worker_config(home: Path, text: str) -> Path:
    """Write the worker config under DAGSTER_HOME (whole, or not at all) and return its path."""
    path = home / CONFIG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(text)
    partial.replace(path)
    return path


@click.command("worker")
@click.option(
    "--templates-dir",
    type=click.Path(path_type=Path),
    default=Path("templates"),
    show_default=True,
    help="Folder of template files; their model resource keys name the queues.",
)
@click.option(
    "-q",
    "--queue",
    "queues",
    multiple=True,
    help="Listen on this queue (repeatable; the prefix is added). Default: the default queue "
    "and one per model resource key.",
)
@click.option("-n", "--name", default=None, help="The worker's Celery node name.")
@click.option("--concurrency", type=int, default=None, help="Steps this worker runs at once.")
@click.option("--dry-run", is_flag=True, help="Print the command and its config; start nothing.")
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker_command(
    templates_dir: Path,
    queues: tuple[str, ...],
    name: str | None,
    concurrency: int | None,
    dry_run: bool,
    celery_args: tuple[str, ...],
) -> None:
    """Start a Celery worker on this deployment's queues (dagster-celery worker start).

    Arguments after `--` go to Celery's worker as they are.
    """
    try:
        frames = [] if queues else load_templates_apart(templates_dir)[0]
        listened = worker_queues((k for f in frames for k in f.template.models.values()), queues)
        home = os.environ.get("DAGSTER_HOME", "").strip()
        if not home and not dry_run:
            raise MarigoldError("DAGSTER_HOME is not set: a worker needs the deployment instance")
        config = worker_config_yaml()
        config_path = Path(home or "$DAGSTER_HOME") / CONFIG_FILE
        argv = worker_argv(
            listened, config_path, name=name, concurrency=concurrency, extra=celery_args
        )
    except MarigoldError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(1)
    if dry_run:
        click.echo(shlex.join(argv))
        click.echo(f"# {config_path}\n{config}", nl=False)
        return
    write_worker_config(Path(home), config)
    sys.stdout.flush()
    os.execv(argv[0], argv)

"""Input roots: the folders a launch-supplied input path may resolve under, links followed.

Whoever launches a run (the Launchpad, GraphQL, `dagster job execute -c`, `marigold run`, a
sensor) chooses its input paths, so a step reads one only when it resolves under an input root:
the folders in `MARIGOLD_INPUT_ROOTS` (separated by `os.pathsep`), by default the template's
folder and the instance's storage folder. The template's watched folder and the paths the
template itself names (input defaults, trigger inputs) are allowed too: its author chose them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from marigold_dagster.errors import InputOutsideRoots
from marigold_dagster.template.frame import Frame

INPUT_ROOTS_ENV = "MARIGOLD_INPUT_ROOTS"


def input_roots(
    frame: Frame, storage_directory: str | None, environ: Mapping[str, str] | None = None
) -> list[Path]:
    """The folders `frame`'s launch inputs may resolve under (real paths, links followed)."""
    environ = os.environ if environ is None else environ
    configured = [p for p in environ.get(INPUT_ROOTS_ENV, "").split(os.pathsep) if p.strip()]
    if configured:
        roots = [Path(p).expanduser() for p in configured]
    else:
        roots = [frame.path.parent]
        if storage_directory:
            roots.append(Path(storage_directory))
    watch = frame.template.triggers.watch
    if watch is not None:
        roots.append(frame.resolve(watch.folder))
    return list(dict.fromkeys(Path(os.path.realpath(root)) for root in roots))


def _declared_paths(frame: Frame) -> set[Path]:
    """The paths the template itself names for its inputs: defaults and trigger inputs."""
    named = [spec.default for spec in frame.template.inputs.values() if spec.default]
    for trigger in (frame.template.triggers.watch, frame.template.triggers.schedule):
        if trigger is not None:
            named.extend(trigger.inputs.values())
    return {Path(os.path.realpath(frame.resolve(path))) for path in named}


def confine_input(
    frame: Frame,
    name: str,
    path: str,
    storage_directory: str | None,
    environ: Mapping[str, str] | None = None,
) -> str:
    """`path` resolved (links followed) when it lies under an input root of `frame`.

    Raises:
        InputOutsideRoots: naming the input, where it resolves and the roots; never what the
            file holds.
    """
    real = Path(os.path.realpath(path))
    roots = input_roots(frame, storage_directory, environ)
    if real in _declared_paths(frame) or any(real.is_relative_to(root) for root in roots):
        return str(real)
    shown = f"{path} (resolving to {real})" if str(real) != os.path.abspath(path) else str(real)
    raise InputOutsideRoots(
        f"input '{name}' of template '{frame.name}' is {shown}, outside the input roots "
        f"{', '.join(str(root) for root in roots)}; put the file under one of them, or add its "
        f"folder to {INPUT_ROOTS_ENV} (folders separated by '{os.pathsep}') in the deployment"
    )

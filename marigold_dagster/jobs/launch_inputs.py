"""Launch inputs: the run config that gives each step reading a template input its path.

Template inputs are op config of the steps that read them (see `jobs.step_ops.input_config_schema`),
so a launch (`marigold run`, a sensor, a schedule, a chained follow-up) supplies
{input name: path} and this module turns it into `{"ops": {step: {"config": {input: path}}}}`.

Whoever launches a run chooses these paths, so a step reads one only when it resolves, links
followed, under an input root (`confine_input`): the folders in `MARIGOLD_INPUT_ROOTS`
(separated by `os.pathsep`), by default the template's folder and the instance's storage
folder; the template's watched folder and the paths the template itself names (input defaults,
trigger inputs) are allowed too, since its author chose them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from marigold_dagster.errors import InputOutsideRoots, MarigoldError
from marigold_dagster.template.frame import Frame

INPUT_ROOTS_ENV = "MARIGOLD_INPUT_ROOTS"


def input_run_config(frame: Frame, inputs: Mapping[str, str]) -> dict[str, Any]:
    """Run config giving each step that reads a template input the launch-supplied path."""
    unknown = sorted(set(inputs) - set(frame.template.inputs))
    if unknown:
        declared = ", ".join(sorted(frame.template.inputs)) or "none"
        raise MarigoldError(f"unknown input(s) {unknown} for '{frame.name}'; declared: {declared}")
    ops: dict[str, Any] = {}
    for step in frame:
        reads = step.composition.template_inputs if step.composition else frozenset()
        given = {name: str(Path(inputs[name]).resolve()) for name in reads if name in inputs}
        if given:
            ops[step.name] = {"config": given}
    return {"ops": ops} if ops else {}


def run_config_inputs(frame: Frame, run_config: Mapping[str, Any]) -> dict[str, str]:
    """The input paths a run of `frame`'s job was given: its run config, else the defaults."""
    given: dict[str, str] = {}
    ops = run_config.get("ops") or {}
    for step in frame:
        config = (ops.get(step.name) or {}).get("config") or {}
        reads = step.composition.template_inputs if step.composition else frozenset()
        for name in reads:
            if isinstance(config.get(name), str):
                given.setdefault(name, config[name])
    for name, spec in frame.template.inputs.items():
        if name not in given and spec.default is not None:
            given[name] = str(frame.resolve(spec.default))
    return given


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

"""Launch inputs: the run config that gives each step reading a template input its path.

Template inputs are op config of the steps that read them (see `jobs.step_ops.input_config_schema`),
so a launch (`marigold run`, a sensor, a schedule, a chained follow-up) supplies
{input name: path} and this module turns it into `{"ops": {step: {"config": {input: path}}}}`.

Whoever launches a run chooses these paths, so a step reads one only when it resolves under an
input root (see `marigold_dagster.runtime.input_roots`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from marigold_dagster.errors import MarigoldError
from marigold_dagster.template.frame import Frame


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

"""A frame drawn as a Mermaid flowchart: one node per step, shaped by kind, edges by dependency.

>>> print(frame_mermaid(frame))  # doctest: +SKIP
flowchart TD
  load["load<br/>acquire.read_table"]
  route{"route<br/>decide.rules"}
  load --> route
"""

from __future__ import annotations

from marigold_dagster.template.frame import Frame, FrameStep
from marigold_dagster.template.model import StepKind

_SHAPES = {
    StepKind.TASK: ('["', '"]'),
    StepKind.DECISION: ('{"', '"}'),
    StepKind.CONVERGE: ('(("', '"))'),
    StepKind.BATCH: ('[["', '"]]'),
    StepKind.PLANNING: ('[/"', '"/]'),
    StepKind.GATE: ('{{"', '"}}'),
}


def frame_mermaid(frame: Frame) -> str:
    """The template's steps as `flowchart TD`; a decision's edges carry the branch name."""
    lines = ["flowchart TD"]
    for step in frame:
        open_, close = _SHAPES[step.kind]
        lines.append(f"  {step.name}{open_}{_label(step)}{close}")
    for step in frame:
        for upstream in step.step.depends_on:
            source = frame.steps.get(upstream)
            if source is not None and step.name in source.branches:
                lines.append(f"  {upstream} -->|{step.name}| {step.name}")
            elif source is not None and source.kind is StepKind.GATE:
                lines.append(f"  {upstream} -->|approved| {step.name}")
            else:
                lines.append(f"  {upstream} --> {step.name}")
    return "\n".join(lines)


def _label(step: FrameStep) -> str:
    what = step.kind.value
    if step.composition is not None:
        what = step.composition.source
    elif step.kind is StepKind.PLANNING:
        what = f"planning: {len(step.planning.allow)} capabilities"
    elif step.kind is StepKind.GATE:
        what = "gate"
    text = f"{step.name}<br/>{what}"
    return text.replace('"', "#quot;")

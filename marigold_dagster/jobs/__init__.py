"""Jobs: a checked template compiled into Dagster definitions.

`compiler` wires one op per template step into a job; the op factories live in `step_ops`
(task, decision, converge), `batch_ops` (split, chunk, merge), `planning_ops` (plan, levels,
collect) and `gate_ops` (the pause at a gate and the decision job). `assets` declares the asset
graph, `triggers` and `sensors` the schedules and sensors, `model_binding` the model resources,
`launch_inputs` the run config of a template's inputs, and `definitions` puts it all together.
"""

from marigold_dagster.jobs.compiler import compile_frame
from marigold_dagster.jobs.definitions import build_defs

__all__ = [
    "build_defs",
    "compile_frame",
]

"""Runtime: what runs inside an op once Dagster has started it.

`composition` runs a step's composition with its model resources, deadline and usage meter,
and turns the result into step metadata; `dead_letters` holds the rows a batch set aside, with
their errors.
"""

from marigold_dagster.runtime.composition import run_composition, step_metadata
from marigold_dagster.runtime.dead_letters import DeadLetter

__all__ = [
    "DeadLetter",
    "run_composition",
    "step_metadata",
]

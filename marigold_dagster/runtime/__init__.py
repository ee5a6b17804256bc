"""Runtime: what runs inside an op once Dagster has started it.

The op factories in `jobs` are wiring; each compute body calls one function here. `steps` runs
task, decision and converge steps, `chunks` splits, runs and merges a batch's chunks, `planned`
plans a phase and runs planned steps level by level, and `gates` pauses a run at a gate and
goes on after a decision. Beneath them, `composition` runs a step's composition and builds its
metadata, `outputs` holds what every op body shares (materializations, failures, retries,
artifacts, launch inputs), and `dead_letters` the rows a batch set aside.
"""

from marigold_dagster.runtime.chunks import merge_chunks, run_chunk, split_into_chunks
from marigold_dagster.runtime.composition import run_composition, step_metadata
from marigold_dagster.runtime.dead_letters import DeadLetter
from marigold_dagster.runtime.gates import pass_gate
from marigold_dagster.runtime.planned import plan_phase, run_planned_step
from marigold_dagster.runtime.steps import run_converge, run_decision, run_task

__all__ = [
    "DeadLetter",
    "merge_chunks",
    "pass_gate",
    "plan_phase",
    "run_chunk",
    "run_composition",
    "run_converge",
    "run_decision",
    "run_planned_step",
    "run_task",
    "split_into_chunks",
    "step_metadata",
]

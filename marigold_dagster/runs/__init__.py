"""Runs: starting, previewing and resuming template runs from Python and the command line.

`local_run` runs a template in process, `dry_run` asks the planner for a plan without running
it, `resume` re-executes a run from failure past a decided gate, and `gate_commands` records a
decision and resumes.
"""

from marigold_dagster.runs.dry_run import dry_run_planning
from marigold_dagster.runs.local_run import run_locally
from marigold_dagster.runs.resume import resume_run

__all__ = [
    "dry_run_planning",
    "resume_run",
    "run_locally",
]

"""The Dagster entry point: every template in templates/ compiled into a job (a process that
reconstructs one job, such as a step worker, compiles only that one: see `load_defs`)."""

import os
from pathlib import Path

from marigold_dagster.jobs.definitions import load_defs

TEMPLATES_DIR = Path(os.environ.get("MARIGOLD_TEMPLATES_DIR", Path(__file__).parent / "templates"))

defs = load_defs(TEMPLATES_DIR)

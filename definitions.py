"""The Dagster entry point: every template in templates/ compiled into a job."""

import os
from pathlib import Path

from marigold_dagster.jobs.definitions import build_defs

TEMPLATES_DIR = Path(os.environ.get("MARIGOLD_TEMPLATES_DIR", Path(__file__).parent / "templates"))

defs = build_defs(TEMPLATES_DIR)

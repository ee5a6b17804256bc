"""The Dagster instance the command line reads and writes."""

from __future__ import annotations

import os
from pathlib import Path

from dagster import DagsterInstance

from marigold_dagster.errors import MarigoldError


def open_instance(project_dir: Path) -> tuple[DagsterInstance, Path]:
    """The instance in DAGSTER_HOME, else the one `project_dir/dagster.yaml` describes."""
    home = os.environ.get("DAGSTER_HOME")
    if home:
        return DagsterInstance.get(), Path(home)
    if not (project_dir / "dagster.yaml").is_file():
        raise MarigoldError(
            f"no Dagster instance: set DAGSTER_HOME, or run from a folder with dagster.yaml "
            f"(looked in {project_dir})"
        )
    return DagsterInstance.from_config(str(project_dir)), project_dir

"""The Dagster instance the command line reads and writes."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from dagster import DagsterInstance

from marigold_dagster.errors import MarigoldError


def open_instance(project_dir: Path) -> tuple[DagsterInstance, Path]:
    """The instance in DAGSTER_HOME, else the one `project_dir/dagster.yaml` describes.

    Raises:
        MarigoldError: no instance is configured, or its storage cannot be opened (one line
            naming the folder and the storage's own reason, e.g. a database that does not exist).
    """
    home = os.environ.get("DAGSTER_HOME")
    if not home and not (project_dir / "dagster.yaml").is_file():
        raise MarigoldError(
            f"no Dagster instance: set DAGSTER_HOME, or run from a folder with dagster.yaml "
            f"(looked in {project_dir})"
        )
    folder = Path(home) if home else project_dir
    # dagster-postgres logs every connection retry on the root logger before giving up.
    root_logger = logging.getLogger()
    level = root_logger.level
    root_logger.setLevel(logging.ERROR)
    try:
        instance = DagsterInstance.get() if home else DagsterInstance.from_config(str(folder))
    except Exception as error:  # storage drivers raise their own types; the cause is what counts
        raise MarigoldError(
            f"cannot open the Dagster instance of {folder / 'dagster.yaml'}: {_root_cause(error)}"
        ) from None
    finally:
        root_logger.setLevel(level)
    return instance, folder


def _root_cause(error: BaseException) -> str:
    """The first line of the innermost cause (the driver's own words, which name no password)."""
    while error.__cause__ is not None or error.__context__ is not None:
        error = error.__cause__ or error.__context__  # type: ignore[assignment]
    return (str(error).strip().splitlines() or [type(error).__name__])[0]

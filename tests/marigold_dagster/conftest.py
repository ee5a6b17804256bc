"""Fixtures for compiler tests: the test capabilities' catalog, template files and runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance

from grammar_ops import Catalog, standard_catalog
from marigold_dagster.jobs.compiler import compile_frame
from marigold_dagster.records.run_summary import summarise_run
from marigold_dagster.template.loader import load_template
from tests.support.capabilities import TEST_CAPABILITIES
from tests.support.template_run import TemplateRun


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    """The standard catalog plus the test application capabilities."""
    return standard_catalog().extended(TEST_CAPABILITIES)


@pytest.fixture
def write_template(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write YAML text as `<name>.yaml` in a fresh templates folder; return its path."""
    folder = tmp_path / "templates"
    folder.mkdir(exist_ok=True)

    def write(name: str, text: str) -> Path:
        path = folder / f"{name}.yaml"
        path.write_text(text)
        return path

    return write


@pytest.fixture
def run_template(
    catalog: Catalog, write_template: Callable[[str, str], Path]
) -> Callable[..., TemplateRun]:
    """Load YAML text, compile it and run it in process on the given instance."""

    def run(name: str, text: str, instance: DagsterInstance, **kwargs: Any) -> TemplateRun:
        frame = load_template(write_template(name, text), catalog)
        job = compile_frame(frame)
        result = job.execute_in_process(instance=instance, raise_on_error=False, **kwargs)
        return TemplateRun(frame, result, summarise_run(instance, result.run_id, frame))

    return run

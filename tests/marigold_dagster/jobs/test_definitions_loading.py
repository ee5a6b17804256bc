"""Definitions as a step worker loads them: the one job it runs, each template compiled once."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest
from dagster import Definitions, RepositoryDefinition
from dagster._core.definitions.reconstruct import ReconstructableRepository

from marigold_dagster.errors import TemplatesInvalid
from marigold_dagster.jobs import definitions
from marigold_dagster.jobs.definitions import build_defs, load_defs, template_job, template_paths

TEMPLATES = Path(__file__).parents[3] / "templates"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """The flagship beside a broken template: only a load of every template sees the latter."""
    templates = tmp_path / "templates"
    templates.mkdir()
    shutil.copy(TEMPLATES / "contract_review.yaml", templates)
    (templates / "broken.yaml").write_text("name: broken\nsteps: [\n")
    return templates


def test_a_reconstructed_job_compiles_its_own_template_only(folder: Path, tmp_path: Path):
    with pytest.raises(TemplatesInvalid):
        build_defs(folder)
    module = tmp_path / f"defs_{uuid.uuid4().hex[:8]}.py"
    module.write_text(
        "from marigold_dagster.jobs.definitions import load_defs\n"
        f"defs = load_defs({str(folder)!r})\n"
    )
    repo = ReconstructableRepository.for_file(str(module), "defs", str(tmp_path))
    job = repo.get_reconstructable_job("contract_review").get_definition()
    assert isinstance(repo.get_definition(), RepositoryDefinition)
    expected = build_defs(TEMPLATES).resolve_job_def("contract_review")
    assert job.name == "contract_review"
    assert sorted(job.resource_defs) == sorted(expected.resource_defs)
    assert job.executor_def.name == expected.executor_def.name
    assert sorted(n.name for n in job.graph.nodes) == sorted(n.name for n in expected.graph.nodes)
    gate = repo.get_reconstructable_job("marigold_gate_decision").get_definition()
    assert "io_manager" in gate.resource_defs


def test_outside_a_reconstruction_every_definition_is_built():
    with definitions.every_definition():
        assert not definitions.reconstructing_one_job()
        assert isinstance(load_defs(TEMPLATES), Definitions)


def test_a_template_compiles_once_per_process_and_environment(
    monkeypatch: pytest.MonkeyPatch,
):
    path = template_paths(TEMPLATES)["contract_review"]
    monkeypatch.delenv("MARIGOLD_EXECUTOR", raising=False)
    first = template_job(path)
    assert template_job(path) is first
    monkeypatch.setenv("MARIGOLD_EXECUTOR", "multiprocess")
    other = template_job(path)
    assert other is not first
    assert other.executor_def.name != first.executor_def.name

"""Pytest fixtures over the deployment harness, imported by the conftests that need them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.deployment import DagsterDeployment, acquire_shared, release_shared


@pytest.fixture(scope="session")
def dagster_deployment(
    postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DagsterDeployment]:
    """dagster-webserver + dagster-daemon on a fresh PostgreSQL database, one per session.

    Several conftests import this fixture; they share one deployment, stopped (its process
    groups killed) when the last of them is torn down, before the database is dropped.
    """
    deployment = acquire_shared(tmp_path_factory.mktemp("dagster_home"), postgres_url)
    try:
        yield deployment
    finally:
        release_shared()

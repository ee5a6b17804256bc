"""Shared fixtures: a real PostgreSQL-backed Dagster instance and an ephemeral one."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
from dagster import DagsterInstance

POSTGRES = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "test"}


def _admin_connection():  # type: ignore[no-untyped-def]
    try:
        connection = psycopg2.connect(**POSTGRES, connect_timeout=5)
    except psycopg2.OperationalError as error:
        pytest.fail(
            f"PostgreSQL is not reachable at {POSTGRES['host']}:{POSTGRES['port']} "
            f"(user {POSTGRES['user']}, database {POSTGRES['dbname']}): {error}"
        )
    connection.autocommit = True
    return connection


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh database for this test session on the machine's PostgreSQL, dropped afterwards."""
    name = f"marigold_test_{uuid.uuid4().hex[:10]}"
    admin = _admin_connection()
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def write_instance_yaml(home: Path, postgres_url: str) -> None:
    """A dagster.yaml storing runs, events and schedules in PostgreSQL."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(
        f"storage:\n  postgres:\n    postgres_url: {postgres_url}\ntelemetry:\n  enabled: false\n"
    )


@pytest.fixture(scope="session")
def postgres_instance(
    postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DagsterInstance]:
    """A persistent Dagster instance on PostgreSQL (run, event log and schedule storage)."""
    home = tmp_path_factory.mktemp("dagster_home_pg")
    write_instance_yaml(home, postgres_url)
    with DagsterInstance.from_config(str(home)) as instance:
        yield instance


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[DagsterInstance]:
    """An ephemeral instance whose storage folder outlives the run (for reading artifacts)."""
    with DagsterInstance.ephemeral(tempdir=str(tmp_path / "dagster")) as ephemeral:
        yield ephemeral


# Fixtures that bring a real component into a test, and the lane each one puts the test in. Derived
# from the fixture closure, so a test that reaches PostgreSQL through any chain of fixtures is
# marked, and `pytest -m "not integration and not slow"` never needs PostgreSQL or chromium.
_LANE_OF_FIXTURE = {
    "postgres_url": ("integration",),
    "dagster_deployment": ("integration", "slow"),
    "browser": ("integration", "slow"),
    "tls_server": ("slow",),
    "llama_server": ("real_model", "slow"),
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for fixture in getattr(item, "fixturenames", ()):
            for marker in _LANE_OF_FIXTURE.get(fixture, ()):
                item.add_marker(marker)


@pytest.fixture(autouse=True)
def _subprocesses_only_in_the_slow_lane(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A test that starts a subprocess must be marked `slow`, so the fast lane stays fast."""
    if request.node.get_closest_marker("slow"):
        return
    nodeid = request.node.nodeid

    def refuse(self: subprocess.Popen[bytes], *args: object, **kwargs: object) -> None:
        raise AssertionError(f"{nodeid} starts a subprocess: mark it @pytest.mark.slow")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)

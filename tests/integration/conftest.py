"""Fixtures for tests against a running dagster-webserver and dagster-daemon."""

from tests.integration.fixtures import dagster_deployment

__all__ = ["dagster_deployment"]

"""Fixtures for tests against a running dagster-webserver and dagster-daemon."""

from tests.support.deployment_fixtures import dagster_deployment

__all__ = ["dagster_deployment"]

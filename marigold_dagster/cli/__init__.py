"""The `marigold` command line."""

from marigold_dagster.cli.main import main

__all__ = ["main"]

"""A finished in-process run of a template, with its summary."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from dagster import ExecuteInProcessResult

from marigold_dagster.records.run_summary import RunSummary
from marigold_dagster.template.frame import Frame


class TemplateRun:
    """A finished in-process run of a template, with its summary."""

    def __init__(self, frame: Frame, result: ExecuteInProcessResult, summary: RunSummary):
        self.frame = frame
        self.result = result
        self.summary = summary

    @property
    def started(self) -> list[str]:
        """Step keys in the order they started."""
        return [e.step_key for e in self.result.all_events if e.event_type_value == "STEP_START"]

    def rows(self, step: str) -> list[dict[str, Any]]:
        value = self.result.output_for_node(step)
        loaded = value.load()
        return loaded.to_pylist() if isinstance(loaded, pa.Table) else loaded

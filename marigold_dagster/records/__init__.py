"""Records: what the platform reads from and writes to the Dagster instance.

Budget use from a run's event log (`budget_use`), gate pauses and decisions (`gate_decisions`),
the run summary (`run_summary`), run history and lineage across correlated tasks
(`run_history`, `lineage`, `correlation`), typed reads of event metadata (`metadata`), and the
instance the command line opens (`instance`).
"""

from marigold_dagster.records.budget_use import budget_use
from marigold_dagster.records.correlation import correlation_tags
from marigold_dagster.records.gate_decisions import record_decision
from marigold_dagster.records.instance import open_instance
from marigold_dagster.records.run_summary import RunSummary, summarise_run

__all__ = [
    "RunSummary",
    "budget_use",
    "correlation_tags",
    "open_instance",
    "record_decision",
    "summarise_run",
]

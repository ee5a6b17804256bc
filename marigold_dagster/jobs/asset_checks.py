"""Asset checks the ops evaluate, declared so the Dagster UI lists them as the assets' checks.

Runs evaluate two checks from inside their ops: `plan_validated` on each planning step's plan
asset (the planner's fragment passed every validation rule) and `every_row_processed` on each
batch step's asset (the merge accounted for every input row). Each template declares them in
one `multi_asset_check`; its own compute re-evaluates a check from the asset's latest
materialization, so "Execute" in the UI answers for the last run that recorded the asset.
"""

# No `from __future__ import annotations`: Dagster reads the check's `context` annotation at
# definition time and refuses it as a string.

from collections.abc import Callable, Iterator, Mapping

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckKey,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    MetadataValue,
    multi_asset_check,
)

from marigold_dagster import keys
from marigold_dagster.keys import (
    EVERY_ROW_PROCESSED_CHECK,
    PLAN_VALIDATED_CHECK,
    plan_asset_key,
    step_asset_key,
)
from marigold_dagster.records.metadata import metadata_int
from marigold_dagster.template.frame import Frame
from marigold_dagster.template.model import StepKind

_CHECKS: dict[StepKind, tuple[str, Callable[[str, str], AssetKey], str]] = {
    StepKind.PLANNING: (
        PLAN_VALIDATED_CHECK,
        plan_asset_key,
        "The planner's fragment passed every validation rule before anything ran.",
    ),
    StepKind.BATCH: (
        EVERY_ROW_PROCESSED_CHECK,
        step_asset_key,
        "Every input row was processed; the rest are dead letters, accounted for.",
    ),
}
"""The check each kind of step evaluates: its name, the asset it is on, what it verifies."""


def template_check_specs(frame: Frame) -> list[AssetCheckSpec]:
    """The checks runs of `frame` evaluate, one per planning step and one per batch step."""
    specs = []
    for step in frame:
        if step.kind in _CHECKS:
            name, asset_key, description = _CHECKS[step.kind]
            asset = asset_key(frame.name, step.name)
            specs.append(AssetCheckSpec(name, asset=asset, description=description))
    return specs


def template_asset_checks(frame: Frame) -> list[AssetChecksDefinition]:
    """The declared checks of `frame` (none when it has no planning or batch step)."""
    specs = template_check_specs(frame)
    if not specs:
        return []

    @multi_asset_check(
        specs=specs,
        name=f"{frame.name}__checks",
        can_subset=True,
        description=f"Re-evaluate the checks of template '{frame.name}' from the latest "
        "materialization of each checked asset.",
    )
    def recheck(context: AssetCheckExecutionContext) -> Iterator[AssetCheckResult]:
        for check in sorted(context.selected_asset_check_keys, key=str):
            event = context.instance.get_latest_materialization_event(check.asset_key)
            materialization = event.asset_materialization if event else None
            yield recheck_from(check, materialization.metadata if materialization else None)

    return [recheck]


def recheck_from(
    check: AssetCheckKey, metadata: Mapping[str, MetadataValue] | None
) -> AssetCheckResult:
    """The result of `check` for the latest materialization's `metadata` (None: never
    materialized)."""
    if metadata is None:
        return AssetCheckResult(
            check_name=check.name,
            asset_key=check.asset_key,
            passed=False,
            severity=AssetCheckSeverity.WARN,
            description="No run has recorded this asset yet.",
        )
    if check.name == EVERY_ROW_PROCESSED_CHECK:
        values = {name: entry.value for name, entry in metadata.items()}
        dead_lettered = metadata_int(values, keys.ROWS_DEAD_LETTERED_KEY)
        return AssetCheckResult(
            check_name=check.name,
            asset_key=check.asset_key,
            passed=dead_lettered == 0,
            severity=AssetCheckSeverity.WARN,
            metadata={
                keys.RECONCILIATION_KEY: metadata[keys.RECONCILIATION_KEY],
                keys.ROWS_DEAD_LETTERED_KEY: dead_lettered,
            },
        )
    # a plan materialization names its fragment only when a fragment was accepted
    return AssetCheckResult(
        check_name=check.name,
        asset_key=check.asset_key,
        passed=keys.FRAGMENT_ID_KEY in metadata,
        metadata={
            name: metadata[name]
            for name in (keys.ATTEMPTS_KEY, keys.REJECTED_ATTEMPTS_KEY, keys.VALIDATION_KEY)
            if name in metadata
        },
    )

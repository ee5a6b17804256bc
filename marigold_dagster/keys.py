"""Every name the platform writes into Dagster: tags, metadata keys, asset keys, op names.

A name that one module writes and another reads is defined here once, so writer and reader
cannot drift apart. Tags end in `_TAG`, metadata keys in `_KEY`; op and output names are plain.
"""

from __future__ import annotations

from enum import StrEnum

from dagster import AssetKey

from marigold_dagster.template.frame import GATE_APPROVED, FrameStep
from marigold_dagster.template.model import StepKind

# -- run and op tags
CORRELATION_TAG = "marigold/correlation_id"
KIND_TAG = "marigold/kind"
PARENT_CORRELATION_TAG = "marigold/parent_correlation_id"
PARENT_RUN_TAG = "marigold/parent_run_id"
MODEL_BACKEND_TAG = "marigold/model_backend"  # `offline` or `sglang <urls>`: what ran the models
PAUSED_AT_GATE = "marigold/paused_at_gate"
REEXECUTION_OF_TAG = "marigold/reexecution_of"  # the run a re-execution re-executes
STEP_KIND_TAG = "marigold/step_kind"
TEMPLATE_TAG = "marigold/template"
# Dagster's own run tag: whether a failed run is retried by the daemon (Dagster does not export
# the name; a test checks it against Dagster's value).
RETRY_ON_FAILURE_TAG = "dagster/retry_on_asset_or_op_failure"
TEMPLATE_VERSION_TAG = "marigold/template_version"
TRIGGER_TAG = "marigold/trigger"
TRIGGER_FILE_TAG = "marigold/trigger_file"

# -- metadata keys
APPROVE_COMMAND_KEY = "marigold/approve_command"
APPROVERS_KEY = "marigold/approvers"
ATTEMPT_KEY = "marigold/attempt"
ATTEMPTS_KEY = "marigold/attempts"
BUDGET_KEY = "marigold/budget"
BUDGET_PREFIX = "marigold/budget_"  # every budget entry starts so
BUDGET_COST_USD_USED_KEY = "marigold/budget_cost_usd_used"
PHASE_COUNT_KEY = "marigold/budget_phase"
BUDGET_PHASES_USED_KEY = "marigold/budget_phases_used"
STEP_COUNT_KEY = "marigold/budget_step"
BUDGET_STEPS_USED_KEY = "marigold/budget_steps_used"
BUDGET_TOKENS_USED_KEY = "marigold/budget_tokens_used"
BY_KEY = "marigold/by"
PRINCIPAL_KEY = "marigold/principal"  # who the platform checked decided, beside BY_KEY
CAPABILITY_KEY = "marigold/capability"
CAPABILITY_TIER_KEY = "marigold/capability_tier"
CHOSEN_KEY = "marigold/chosen"
CHUNK_KEY = "marigold/chunk"
WORKER_KEY = "marigold/worker"  # host:pid of the process that ran the step
CHUNKS_KEY = "marigold/chunks"
CHUNKS_CAUGHT_UP_KEY = "marigold/chunks_caught_up"
CHUNKS_FAILED_KEY = "marigold/chunks_failed"
CHUNKS_PARTIAL_KEY = "marigold/chunks_partial"
CHUNKS_SUCCEEDED_KEY = "marigold/chunks_succeeded"
COMPOSITION_SOURCE_KEY = "marigold/composition_source"
COMPOSITION_SPEC_KEY = "marigold/composition_spec"
CONVERGED_KEY = "marigold/converged"
CREATED_BY_KEY = "marigold/created_by"
DEAD_LETTERS_PATH_KEY = "marigold/dead_letters_path"
DECIDE_BY_KEY = "marigold/decide_by"
DECIDED_AT_KEY = "marigold/decided_at"
DECIDED_AT_ISO_KEY = "marigold/decided_at_iso"
DECIDED_BY_KEY = "marigold/decided_by"
DECIDED_FOR_RUN_KEY = "marigold/decided_for_run"
DECISION_KEY = "marigold/decision"
DECISION_JOB_KEY = "marigold/decision_job"
DECISION_JOB_CONFIG_KEY = "marigold/decision_job_config"
DEPTH_KEY = "marigold/depth"
# Dagster's own key: the catalog shows it as the asset's row count.
ROW_COUNT_KEY = "dagster/row_count"
PREVIEW_KEY = "preview"
DETAIL_KEY = "marigold/detail"
DONE_KEY = "marigold/done"
DURATION_S_KEY = "marigold/duration_s"
ERROR_TYPE_KEY = "marigold/error_type"
FAILURE_CLASS_KEY = "marigold/failure"
"""`transient` (retried under the step's `retry:`) or `permanent` (failed at once)."""
ESTIMATE_KEY = "marigold/estimate"
FAILED_ROWS_KEY = "marigold/failed_rows"
FAILED_ROWS_PATH_KEY = "marigold/failed_rows_path"
FAILED_ROWS_PREVIEW_KEY = "marigold/failed_rows_preview"
FRAGMENT_KEY = "marigold/fragment"
FRAGMENT_ID_KEY = "marigold/fragment_id"
GATE_KEY = "marigold/gate"
HANDLER_TYPE_KEY = "marigold/handler_type"
INDEX_KEY = "marigold/index"
NOT_CHOSEN_KEY = "marigold/not_chosen"
NOT_RUN_UPSTREAM_KEY = "marigold/not_run_upstream"
OUTPUT_PATH_KEY = "marigold/output_path"
PAUSED_AT_KEY = "marigold/paused_at"
PHASES_PLANNED_KEY = "marigold/phases_planned"
PLANNED_REASON_KEY = "marigold/planned_reason"
PLANNED_STEPS_KEY = "marigold/planned_steps"
PLANNED_STEPS_NOT_RUN_KEY = "marigold/planned_steps_not_run"
PLANNED_STEPS_RUN_KEY = "marigold/planned_steps_run"
PLANNING_KEY = "marigold/planning"
PLANNING_PHASE_KEY = "marigold/planning_phase"
PLANNING_REASONING_KEY = "marigold/planning_reasoning"
PLANNING_STEP_KEY = "marigold/planning_step"
PROMPT_KEY = "marigold/prompt"
PROMPT_CHARS_KEY = "marigold/prompt_chars"
PROMPT_PREFIX_CHARS_KEY = "marigold/prompt_prefix_chars"
PROMPT_SHA256_KEY = "marigold/prompt_sha256"
REASON_KEY = "marigold/reason"
RECONCILIATION_KEY = "marigold/reconciliation"
REJECT_COMMAND_KEY = "marigold/reject_command"
REJECTED_ATTEMPTS_KEY = "marigold/rejected_attempts"
RESULT_DIGESTS_KEY = "marigold/result_digests"
ROWS_DEAD_LETTERED_KEY = "marigold/rows_dead_lettered"
ROWS_FAILED_KEY = "marigold/rows_failed"
ROWS_IN_KEY = "marigold/rows_in"
ROWS_OUT_KEY = "marigold/rows_out"
ROWS_PROCESSED_KEY = "marigold/rows_processed"
RUN_ID_KEY = "marigold/run_id"
SOURCE_PATH_KEY = "marigold/source_path"
SOURCE_ROWS_KEY = "marigold/source_rows"
START_KEY = "marigold/start"
STATUS_KEY = "marigold/status"
STEP_KEY = "marigold/step"
STEP_COUNT_PREFIX = "marigold/steps_"
STOP_KEY = "marigold/stop"
STOPPED_KEY = "marigold/stopped"
SPENT_BEFORE_RETRY_KEY = "marigold/spent_before_retry"  # on an observation: usage of a failed try
SUMMARY_KEY = "marigold/summary"
THEN_KEY = "marigold/then"
TIMEOUT_S_KEY = "marigold/timeout_s"
TOTAL_KEY = "marigold/total"
VALIDATION_KEY = "marigold/validation"
WHO_MAY_DECIDE_KEY = "marigold/who_may_decide"


class GateStatus(StrEnum):
    """Where a gate of a paused run stands: the status of a `GateState`."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    TIMED_OUT = "timed_out"  # no decision before the deadline: counts as rejected


class StepStatus(StrEnum):
    """What became of a step, a chunk or a planned step: the value of `STATUS_KEY`."""

    SUCCEEDED = "succeeded"
    PARTIAL = "partial"  # a batch: some rows were set aside as dead letters
    FAILED = "failed"
    SKIPPED = "skipped"
    NOT_RUN = "not_run"
    RUNNING = "running"
    STOPPED = "stopped"  # a planning step whose budget ran out
    PAUSED = "paused"  # a gate waiting for a decision
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    TIMED_OUT = "timed_out"


# model usage, as the grammar's usage meter records it on every model-calling step
TOKENS_KEY = "llm.total_tokens"
COST_KEY = "llm.cost_usd"


def step_count_key(status: str) -> str:
    """The run-summary entry counting the steps that ended with `status`."""
    return f"{STEP_COUNT_PREFIX}{status}"


# -- op inputs and outputs
RESULT = "result"
DECIDED = "decided"
UPSTREAM = "upstream"
APPROVED = GATE_APPROVED  # the gate output that carries its input on when approved
CHUNK = "chunk"
CHUNKS = "chunks"
BATCH_INPUT = "batch_input"
"""The batch merge input carrying the batch's own input (its columns, when no rows came out)."""
PLAN = "plan"
LEVEL = "level"
PROGRESS = "progress"
PREVIOUS = "previous"
NEXT = "next"  # a phase's result, emitted only when another phase should be planned
PHASE = "phase"  # a phase's result, from the fan-out or collect op that closed it
CLOSED = "closed"  # a phase that planned nothing to run, straight to the planning result
TASK = "task"
DONE = "done_level"
PHASES = "phases"

# -- the gate decision job
DECISION_JOB = "marigold_gate_decision"
DECISION_OP = "record_gate_decision"  # the decision job's one op, configured in the Launchpad


# -- op names (step keys) beside a template step's own
def split_name(step: str) -> str:
    return f"{step}__split"


def merge_name(step: str) -> str:
    return f"{step}__merge"


def result_op_name(step: FrameStep) -> str:
    """The op whose `RESULT` output holds a template step's value: a batch's merge, else its own."""
    return merge_name(step.name) if step.kind is StepKind.BATCH else step.name


def _phase_prefix(step: str, phase: int) -> str:
    return f"{step}__" if phase == 1 else f"{step}__p{phase}_"


def plan_op_name(step: str, phase: int) -> str:
    return f"{_phase_prefix(step, phase)}plan"


def level_op_name(step: str, phase: int, depth: int) -> str:
    return f"{_phase_prefix(step, phase)}L{depth}"


def fanout_op_name(step: str, phase: int, depth: int) -> str:
    return f"{_phase_prefix(step, phase)}L{depth}_fanout"


def collect_op_name(step: str, phase: int) -> str:
    return f"{_phase_prefix(step, phase)}collect"


# -- asset keys and dynamic partitions
PLAN_VALIDATED_CHECK = "plan_validated"  # asset check on a planning step's plan asset
EVERY_ROW_PROCESSED_CHECK = "every_row_processed"  # asset check on a batch step's asset


def input_asset_key(template: str, name: str) -> AssetKey:
    return AssetKey([template, "inputs", name])


def step_asset_key(template: str, step: str) -> AssetKey:
    return AssetKey([template, step])


def plan_asset_key(template: str, step: str) -> AssetKey:
    return AssetKey([template, step, "plan"])


def planned_steps_asset_key(template: str, step: str) -> AssetKey:
    return AssetKey([template, step, "planned"])


def planned_steps_partitions_name(template: str, step: str) -> str:
    """The name of the dynamic partitions of planning step `step`: one per planned step id."""
    return f"{template}__{step}__planned"


def gate_asset_key(template: str, step: str) -> AssetKey:
    """The asset whose observations are the decisions of gate `step` of `template`."""
    return AssetKey([template, step, "gate"])


def gate_partitions_name(template: str, step: str) -> str:
    """The name of the dynamic partitions of gate `step`: one per run that paused there."""
    return f"{template}__{step}__gate_runs"

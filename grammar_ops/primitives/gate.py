"""`gate.approval`: the contract of a human approval gate.

Only the contract lives here (what is asked, who may approve, how long to wait). The platform's
gate step executes it; running it inline fails with a message saying so.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from grammar_ops.context import PrimitiveContext
from grammar_ops.contracts import Kind
from grammar_ops.findings import PrimitiveError
from grammar_ops.primitive import Primitive, PrimitiveConfig


class ApprovalConfig(
    PrimitiveConfig,
    json_schema_extra={
        "examples": [
            {"prompt": "Send the report?", "approvers": ["legal-team"], "timeout_s": 86400}
        ]
    },
):
    prompt: str = Field(min_length=1, description="What the approver is asked.")
    approvers: list[str] = Field(min_length=1, description="Users or groups who may approve.")
    timeout_s: int = Field(gt=0, le=30 * 86400, description="How long to wait for an answer.")


class Approval(Primitive):
    name = "gate.approval"
    summary = "Wait for a human approval before the flow goes on (run as a gate step)."
    description = (
        "Declares a human approval: prompt, approvers and timeout. It passes its input through "
        "once approved; the platform's gate step (step kind `gate`) executes it, never a "
        "composition inline."
    )
    accepts = frozenset(Kind)
    produces = None
    Config = ApprovalConfig

    def run(self, value: Any, config: ApprovalConfig, ctx: PrimitiveContext) -> Any:
        raise PrimitiveError(
            f"gate.approval cannot run inline in step '{ctx.step}': gates are executed by the "
            "platform's gate step. Declare the step with `kind: gate` instead of composing it."
        )

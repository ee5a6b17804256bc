"""Deciding where a paused gate stands from the decisions recorded for it."""

from marigold_dagster.keys import GateStatus
from marigold_dagster.records.gate_decisions import GateDecision, GatePause, decide_gate

PAUSE = GatePause(
    run_id="r1",
    template="t",
    step="sign_off",
    prompt="Approve?",
    approvers=("alice",),
    timeout_s=60.0,
    paused_at=1000.0,
)


def _decision(verdict: str, by: str = "alice", at: float = 1010.0) -> GateDecision:
    return GateDecision(
        run_id="r1",
        template="t",
        step="sign_off",
        decision=verdict,  # type: ignore[arg-type]
        by=by,
        reason="checked",
        decided_at=at,
        principal=f"os_user:{by}",
    )


def test_gate_status_values_are_the_recorded_strings() -> None:
    assert [s.value for s in GateStatus] == ["pending", "approved", "rejected", "timed_out"]


def test_decide_gate_returns_a_gate_status() -> None:
    assert decide_gate(PAUSE, [], now=1020.0).status is GateStatus.PENDING
    assert decide_gate(PAUSE, [], now=1100.0).status is GateStatus.TIMED_OUT
    approved = decide_gate(PAUSE, [_decision("approve")], now=1020.0)
    assert approved.status is GateStatus.APPROVED
    assert approved.status == "approved"  # still compares as the string it records
    assert decide_gate(PAUSE, [_decision("reject")], now=1020.0).status is GateStatus.REJECTED
    # someone not among the approvers does not count
    assert decide_gate(PAUSE, [_decision("approve", by="eve")], now=1020.0).status == "pending"

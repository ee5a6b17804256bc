"""Gate steps in the frame and the compiled job: guards, sentinels, outputs, and the pause."""

from __future__ import annotations

from marigold_dagster.jobs.compiler import compile_frame
from marigold_dagster.keys import PAUSED_AT_GATE
from marigold_dagster.records.gate_decisions import pause_record
from marigold_dagster.template.frame import Sentinel
from marigold_dagster.template.loader import load_template

HEADER = """
version: 1
budget: {max_steps: 20, max_tokens: 1000, max_cost_usd: 1, max_fanout: 4}
steps:
  - {name: load, uses: t.rows, with: {n: 2}}
  - name: sign_off
    kind: gate
    depends_on: [load]
    gate: {prompt: "Go on?", approvers: [alice]}
"""


def test_steps_below_a_gate_are_guarded_by_its_approval(write_template, catalog):
    text = (
        "name: below_gate"
        + HEADER
        + """  - {name: left, uses: t.mark, depends_on: [sign_off]}
  - {name: right, uses: t.mark, depends_on: [sign_off]}
  - {name: join, kind: converge, depends_on: [left, right]}
  - {name: beside, uses: t.mark, depends_on: [load]}
  - {name: all, kind: converge, depends_on: [left, beside]}
"""
    )
    frame = load_template(write_template("below_gate", text), catalog)

    assert frame.steps["left"].guard == {("sign_off", "approved")}
    assert frame.steps["beside"].guard == frozenset()
    assert frame.steps["join"].sentinel == Sentinel("sign_off", "approved")
    assert frame.steps["all"].sentinel == Sentinel("sign_off", "decided")


def test_a_gate_op_passes_its_input_on_an_optional_output(write_template, catalog):
    text = "name: gate_outs" + HEADER + "  - {name: send, uses: t.mark, depends_on: [sign_off]}\n"
    job = compile_frame(load_template(write_template("gate_outs", text), catalog))

    gate = job.graph.node_named("sign_off").definition
    assert {name: out.is_required for name, out in gate.outs.items()} == {
        "approved": False,
        "decided": False,  # a paused gate emits nothing
    }
    assert gate.retry_policy is None
    send = job.graph.dependency_structure.input_to_upstream_outputs_for_node("send")
    assert [o.output_def.name for outputs in send.values() for o in outputs] == ["approved"]


def test_a_run_with_no_decision_pauses_at_the_gate_without_failing(run_template, instance):
    text = "name: gate_pause" + HEADER + "  - {name: send, uses: t.mark, depends_on: [sign_off]}\n"
    run = run_template("gate_pause", text, instance)

    # a designed pause: no step fails, the run succeeds, tagged with the gate it waits at
    assert run.result.success
    assert not run.result.get_failed_step_keys()
    assert run.started == ["load", "sign_off"]
    assert instance.get_run_by_id(run.result.run_id).tags[PAUSED_AT_GATE] == "sign_off"
    [pause] = [
        record_pause
        for entry in instance.all_logs(run.result.run_id)
        if (record_pause := pause_record(entry))
    ]
    assert pause[PAUSED_AT_GATE] == "sign_off"
    assert pause["marigold/who_may_decide"] == "alice"
    assert run.summary.step("sign_off").status == "paused"
    assert "marigold approve " in run.summary.step("sign_off").detail
    assert run.summary.step("send").status == "not_run"
    assert run.summary.step("send").detail == "waiting at gate 'sign_off'"

"""Human gates on a real PostgreSQL-backed instance: pause, decide, resume from the gate.

Each test runs a template's job through `execute_job` (a reconstructable job rebuilt from a
definitions file, as `dagster dev` would), so its outputs persist and the run can be
re-executed from failure.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner
from dagster import AssetRecordsFilter, DagsterEventType, DagsterInstance, execute_job

from marigold_dagster.errors import GateDecisionError, GateTimedOut, MarigoldError
from marigold_dagster.jobs.gate_ops import gate_decision_job
from marigold_dagster.keys import DECISION_OP, PAUSED_AT_GATE, gate_asset_key
from marigold_dagster.records.gate_decisions import gate_state, record_decision
from marigold_dagster.records.principals import (
    APPROVERS_ENV,
    PRINCIPAL_TAG_ENV,
    os_user_principal,
)
from marigold_dagster.records.run_summary import summarise_run
from marigold_dagster.runs.gate_commands import approve, reject
from marigold_dagster.runs.resume import reconstructable_job, resume_run, steps_left
from marigold_dagster.template.frame import Frame
from marigold_dagster.template.loader import load_template

IN_PROCESS = {"execution": {"config": {"in_process": {}}}}

DEFINITIONS = """
from pathlib import Path

from grammar_ops import standard_catalog
from marigold_dagster.jobs.definitions import build_defs
from tests.support.capabilities import TEST_CAPABILITIES

defs = build_defs(
    Path(__file__).parent / "templates",
    catalog=standard_catalog().extended(TEST_CAPABILITIES),
)
"""


def gated(name: str, gate: str = "{prompt: 'Send the batch?', approvers: [alice, bob]}") -> str:
    """load -> prepare -> sign_off (gate) -> send; audit beside the gate; report joins both."""
    return f"""
name: {name}
version: 1
budget: {{max_steps: 20, max_tokens: 1000, max_cost_usd: 1, max_fanout: 4}}
steps:
  - {{name: load, uses: t.rows, with: {{n: 3}}}}
  - {{name: prepare, uses: t.mark, depends_on: [load]}}
  - name: sign_off
    kind: gate
    depends_on: [prepare]
    gate: {gate}
  - {{name: send, uses: t.mark, depends_on: [sign_off]}}
  - {{name: audit, uses: t.mark, depends_on: [prepare]}}
  - {{name: report, kind: converge, depends_on: [send, audit]}}
"""


class Project:
    """A templates folder and a definitions file over it, as a deployment has."""

    def __init__(self, root: Path, catalog):  # type: ignore[no-untyped-def]
        self.root = root
        self.catalog = catalog
        (root / "templates").mkdir(parents=True, exist_ok=True)
        self.definitions = root / "definitions.py"
        self.definitions.write_text(DEFINITIONS)

    def add(self, name: str, text: str) -> Frame:
        path = self.root / "templates" / f"{name}.yaml"
        path.write_text(text)
        return load_template(path, self.catalog)

    def launch(self, instance: DagsterInstance, name: str) -> str:
        job = reconstructable_job(self.definitions, name)
        with execute_job(job, instance, run_config=IN_PROCESS) as result:
            return result.run_id


@pytest.fixture
def project(tmp_path: Path, catalog) -> Project:  # type: ignore[no-untyped-def]
    return Project(tmp_path / "project", catalog)


ME = os_user_principal()
LAUNCHPAD_USER = "alice@example.com"


@pytest.fixture(autouse=True)
def approvers_map(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The deployment's approver map: this OS user may act as alice, bob and x."""
    path = tmp_path / "approvers.yaml"
    path.write_text(
        f"alice: {{users: [{ME.name}, {LAUNCHPAD_USER}]}}\n"
        f"bob: {{users: [{ME.name}]}}\nx: {{users: [{ME.name}]}}\n"
    )
    monkeypatch.setenv(APPROVERS_ENV, str(path))
    monkeypatch.setenv(PRINCIPAL_TAG_ENV, "dagster/user")
    return path


def starts(instance: DagsterInstance, *run_ids: str) -> Counter[str]:
    """STEP_START events per step key, across the given runs."""
    counted: Counter[str] = Counter()
    for run_id in run_ids:
        records = instance.get_records_for_run(run_id, of_type=DagsterEventType.STEP_START)
        counted.update(r.event_log_entry.step_key for r in records.records)
    return counted


def pause_failure(instance: DagsterInstance, run_id: str):  # type: ignore[no-untyped-def]
    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.STEP_FAILURE).records
    assert [r.event_log_entry.step_key for r in records] == ["sign_off"]
    data = records[0].event_log_entry.dagster_event.step_failure_data
    return data.user_failure_data


def test_a_gate_pauses_then_approval_resumes_from_the_gate(project, postgres_instance):
    frame = project.add("gate_approve", gated("gate_approve"))
    paused = project.launch(postgres_instance, "gate_approve")

    run = postgres_instance.get_run_by_id(paused)
    assert run.status.value == "FAILURE"
    failure = pause_failure(postgres_instance, paused)
    metadata = {k: v.value for k, v in failure.metadata.items()}
    assert metadata[PAUSED_AT_GATE] == "sign_off"
    assert metadata["marigold/prompt"] == "Send the batch?"
    assert metadata["marigold/approvers"] == ["alice", "bob"]
    assert metadata["marigold/approve_command"].startswith(f"marigold approve {paused} --step")
    assert metadata["marigold/decision_job"] == "marigold_gate_decision"
    assert "Waiting for alice or bob to decide" in failure.description
    first = starts(postgres_instance, paused)
    assert first == {"load": 1, "prepare": 1, "sign_off": 1, "audit": 1}, "nothing below ran"

    summary = summarise_run(postgres_instance, paused, frame)
    assert summary.step("sign_off").status == "paused"
    assert summary.step("send").detail == "waiting at gate 'sign_off'"
    assert gate_state(postgres_instance, paused, "sign_off").status == "pending"

    recorded = record_decision(
        postgres_instance, paused, "sign_off", "approve", by="alice", reason="figures checked"
    )
    assert recorded.describe() == "approved by alice: figures checked"
    resumed = resume_run(postgres_instance, paused, project.definitions)

    assert resumed.success
    total = starts(postgres_instance, paused, resumed.run_id)
    assert total == {
        "load": 1,
        "prepare": 1,
        "audit": 1,
        "sign_off": 2,
        "send": 1,
        "report": 1,
    }, "no step before the gate ran twice"
    summary = summarise_run(postgres_instance, resumed.run_id, frame)
    assert summary.step("sign_off").status == "approved"
    assert summary.step("sign_off").detail == "approved by alice: figures checked"
    assert summary.names("succeeded") == ["load", "prepare", "audit", "send", "report"]
    report = starts(postgres_instance, resumed.run_id)
    assert set(report) == {"sign_off", "send", "report"}


def test_a_rejected_gate_ends_its_branch_and_the_run_succeeds(project, postgres_instance):
    frame = project.add("gate_reject", gated("gate_reject"))
    paused = project.launch(postgres_instance, "gate_reject")
    record_decision(
        postgres_instance, paused, "sign_off", "reject", by="bob", reason="totals look wrong"
    )

    resumed = resume_run(postgres_instance, paused, project.definitions)

    assert resumed.success, "a rejection ends the branch, not the run"
    skipped = postgres_instance.get_records_for_run(
        resumed.run_id, of_type=DagsterEventType.STEP_SKIPPED
    ).records
    assert [r.event_log_entry.step_key for r in skipped] == ["send"]
    summary = summarise_run(postgres_instance, resumed.run_id, frame)
    assert summary.status == "SUCCESS"
    assert summary.step("sign_off").status == "rejected"
    assert summary.step("sign_off").detail == "rejected by bob: totals look wrong"
    assert summary.step("send").status == "skipped"
    assert summary.step("send").detail == "gate 'sign_off' rejected by bob: totals look wrong"
    assert summary.step("report").status == "succeeded", "the converge joins what ran"
    assert starts(postgres_instance, paused, resumed.run_id)["prepare"] == 1


def test_only_listed_approvers_may_decide(project, postgres_instance):
    project.add("gate_approvers", gated("gate_approvers"))
    paused = project.launch(postgres_instance, "gate_approvers")

    with pytest.raises(GateDecisionError, match="'mallory' may not decide gate 'sign_off'") as e:
        record_decision(postgres_instance, paused, "sign_off", "approve", by="mallory", reason="x")
    assert "its approvers are: alice, bob" in str(e.value)
    with pytest.raises(GateDecisionError, match="is not paused at a gate named 'send'"):
        record_decision(postgres_instance, paused, "send", "approve", by="alice", reason="x")
    with pytest.raises(GateDecisionError, match="say why"):
        record_decision(postgres_instance, paused, "sign_off", "approve", by="alice", reason=" ")
    assert gate_state(postgres_instance, paused, "sign_off").status == "pending"

    record_decision(postgres_instance, paused, "sign_off", "approve", by="bob", reason="ok")
    with pytest.raises(GateDecisionError, match="already approved by bob: ok"):
        record_decision(postgres_instance, paused, "sign_off", "reject", by="alice", reason="no")


def test_a_gate_past_its_timeout_counts_as_rejected(project, postgres_instance):
    frame = project.add("gate_timeout", gated("gate_timeout", "{prompt: 'Go?', timeout_s: 0.5}"))
    paused = project.launch(postgres_instance, "gate_timeout")
    time.sleep(1.0)

    assert gate_state(postgres_instance, paused, "sign_off").status == "timed_out"
    with pytest.raises(GateTimedOut, match="counts as rejected"):
        record_decision(postgres_instance, paused, "sign_off", "approve", by="alice", reason="late")
    resumed = resume_run(postgres_instance, paused, project.definitions)

    assert resumed.success
    summary = summarise_run(postgres_instance, resumed.run_id, frame)
    assert summary.step("sign_off").status == "timed_out"
    assert summary.step("sign_off").detail.startswith("timed out: no decision within 0.5 s")
    assert summary.step("send").status == "skipped"
    assert summary.step("send").detail.startswith("gate 'sign_off' timed out")


def test_resuming_before_a_decision_pauses_again_and_keeps_the_first_pause_time(
    project, postgres_instance
):
    project.add("gate_twice", gated("gate_twice", "{prompt: 'Go?', timeout_s: 3600}"))
    paused = project.launch(postgres_instance, "gate_twice")
    first = pause_failure(postgres_instance, paused).metadata["marigold/paused_at"].value

    again = resume_run(postgres_instance, paused, project.definitions)
    assert not again.success
    second = pause_failure(postgres_instance, again.run_id).metadata["marigold/paused_at"].value
    assert second == first, "the deadline counts from the first pause"

    record_decision(postgres_instance, again.run_id, "sign_off", "approve", by="x", reason="y")
    done = resume_run(postgres_instance, again.run_id, project.definitions)
    assert done.success
    counted = starts(postgres_instance, paused, again.run_id, done.run_id)
    assert counted["prepare"] == 1 and counted["sign_off"] == 3 and counted["send"] == 1


def test_a_run_failed_after_its_last_step_has_nothing_to_resume(project, postgres_instance):
    """A worker killed after its last step, before RUN_SUCCESS, leaves all work done."""
    project.add("no_gate", gated("no_gate").split("  - name: sign_off")[0])
    run_id = project.launch(postgres_instance, "no_gate")
    run = postgres_instance.get_run_by_id(run_id)
    postgres_instance.report_run_failed(run, "the run worker was killed (SIGKILL)")
    assert postgres_instance.get_run_by_id(run_id).status.value == "FAILURE"

    assert steps_left(postgres_instance, run_id) == []
    with pytest.raises(MarigoldError, match="every step of run .* succeeded"):
        resume_run(postgres_instance, run_id, project.definitions)


def test_a_paused_run_has_its_gate_and_what_follows_left_to_run(project, postgres_instance):
    project.add("left", gated("left"))
    paused = project.launch(postgres_instance, "left")
    assert set(steps_left(postgres_instance, paused)) == {"sign_off", "send", "report"}


def test_run_retries_do_not_relaunch_a_run_paused_at_a_gate(project, tmp_path):
    """With `run_retries` on, a failed run is retried by the daemon, but not a paused gate."""
    home = tmp_path / "retrying_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(
        "run_retries:\n  enabled: true\n  max_retries: 2\ntelemetry:\n  enabled: false\n"
    )
    project.add("paused", gated("paused"))
    broken = gated("broken").split("  - name: sign_off")[0]
    project.add("broken", broken.replace("uses: t.mark", "uses: t.poison, with: {bad_ids: [0]}"))
    with DagsterInstance.from_config(str(home)) as instance:
        paused = instance.get_run_by_id(project.launch(instance, "paused"))
        failed = instance.get_run_by_id(project.launch(instance, "broken"))
    assert paused.status.value == failed.status.value == "FAILURE"
    assert paused.tags["dagster/retry_on_asset_or_op_failure"] == "false"
    assert paused.tags["dagster/will_retry"] == "false"
    assert failed.tags["dagster/will_retry"] == "true", "an ordinary failure is still retried"


def test_the_decision_job_records_a_decision_queryable_by_run_id(project, postgres_instance):
    project.add("gate_job", gated("gate_job"))
    paused = project.launch(postgres_instance, "gate_job")
    config = {"run_id": paused, "step": "sign_off", "decision": "approve", "by": "alice"}

    result = gate_decision_job.execute_in_process(
        instance=postgres_instance,
        run_config={"ops": {DECISION_OP: {"config": {**config, "reason": "from the Launchpad"}}}},
        tags={"dagster/user": LAUNCHPAD_USER},
    )

    assert result.success
    records = postgres_instance.fetch_observations(
        AssetRecordsFilter(gate_asset_key("gate_job", "sign_off"), asset_partitions=[paused]),
        limit=10,
    ).records
    assert len(records) == 1
    assert postgres_instance.get_dynamic_partitions("gate_job__sign_off__gate_runs") == [paused]
    metadata = {k: v.value for k, v in records[0].asset_observation.metadata.items()}
    assert metadata["marigold/decision"] == "approve"
    assert metadata["marigold/by"] == "alice"
    assert metadata["marigold/principal"] == f"run_tag:{LAUNCHPAD_USER} (run tag dagster/user)"
    assert metadata["marigold/reason"] == "from the Launchpad"
    assert gate_state(postgres_instance, paused, "sign_off").status == "approved"

    refused = gate_decision_job.execute_in_process(
        instance=postgres_instance,
        run_config={"ops": {DECISION_OP: {"config": {**config, "by": "eve", "reason": "x"}}}},
        raise_on_error=False,
    )
    assert not refused.success
    assert resume_run(postgres_instance, paused, project.definitions).success


def test_approve_and_reject_commands_decide_and_resume(
    project, postgres_instance, monkeypatch, tmp_path
):
    frame = project.add("gate_cli", gated("gate_cli"))
    monkeypatch.setenv("DAGSTER_HOME", postgres_instance.root_directory)
    monkeypatch.chdir(project.root)
    runner = CliRunner()

    paused = project.launch(postgres_instance, "gate_cli")
    args = [paused, "--step", "sign_off", "--reason", "ok"]
    denied = runner.invoke(approve, [*args, "--by", "mallory"])
    assert denied.exit_code == 1
    assert "'mallory' may not decide gate 'sign_off'" in denied.output
    done = runner.invoke(approve, [*args, "--by", "alice"])
    assert done.exit_code == 0, done.output
    assert f"gate 'sign_off' of run {paused} approved by alice: ok" in done.output
    assert "SUCCESS" in done.output

    paused = project.launch(postgres_instance, "gate_cli")
    done = runner.invoke(reject, [paused, "--step", "sign_off", "--by", "bob", "--reason", "no"])
    assert done.exit_code == 0, done.output
    resumed_id = done.output.strip().split("as run ")[1].split(":")[0]
    summary = summarise_run(postgres_instance, resumed_id, frame)
    assert summary.step("send").detail == "gate 'sign_off' rejected by bob: no"


def gate_with(approvers: str) -> str:
    return gated("x", f"{{prompt: 'Pay?', approvers: [{approvers}]}}").replace("name: x\n", "")


def test_a_typed_approver_name_alone_decides_nothing(project, postgres_instance, monkeypatch):
    """`--by cfo` from a user nobody mapped to cfo is refused; the gate stays pending."""
    monkeypatch.delenv(APPROVERS_ENV)
    project.add("pay", "name: pay" + gate_with("cfo"))
    paused = project.launch(postgres_instance, "pay")
    with pytest.raises(GateDecisionError, match=f"os_user:{ME.name} .* may not act as approver"):
        record_decision(postgres_instance, paused, "sign_off", "approve", by="cfo", reason="ok")
    runner = CliRunner()
    monkeypatch.setenv("DAGSTER_HOME", postgres_instance.root_directory)
    monkeypatch.chdir(project.root)
    args = [paused, "--step", "sign_off", "--by", "cfo", "--reason", "ok", "--no-resume"]
    denied = runner.invoke(approve, args)
    assert denied.exit_code == 1 and "may not act as approver 'cfo'" in denied.output
    assert gate_state(postgres_instance, paused, "sign_off").status == "pending"


def test_the_approver_map_lets_a_group_act_as_an_approver(
    project, postgres_instance, tmp_path, monkeypatch
):
    group = sorted(ME.groups)[0]
    (tmp_path / "map.yaml").write_text(f"cfo: {{groups: [{group}]}}\n")
    monkeypatch.setenv(APPROVERS_ENV, str(tmp_path / "map.yaml"))
    project.add("pay_group", "name: pay_group" + gate_with("cfo"))
    paused = project.launch(postgres_instance, "pay_group")
    recorded = record_decision(
        postgres_instance, paused, "sign_off", "approve", by="cfo", reason="within budget"
    )
    assert recorded.principal == str(ME) and ME.source.startswith("uid ")
    state = gate_state(postgres_instance, paused, "sign_off")
    assert state.status == "approved" and state.decision.principal == str(ME)


def test_cli_decides_as_the_os_user_by_default(project, postgres_instance, monkeypatch, tmp_path):
    (tmp_path / "empty.yaml").write_text("{}\n")
    monkeypatch.setenv(APPROVERS_ENV, str(tmp_path / "empty.yaml"))
    project.add("mine", "name: mine" + gate_with(ME.name))
    paused = project.launch(postgres_instance, "mine")
    monkeypatch.setenv("DAGSTER_HOME", postgres_instance.root_directory)
    monkeypatch.chdir(project.root)
    args = [paused, "--step", "sign_off", "--reason", "mine to approve", "--no-resume"]
    done = CliRunner().invoke(approve, args)
    assert done.exit_code == 0, done.output
    assert f"approved by {ME.name}: mine to approve (checked: {ME})" in done.output


def test_the_launchpad_decision_needs_the_deployments_user_tag(
    project, postgres_instance, monkeypatch
):
    project.add("pay_ui", "name: pay_ui" + gate_with("alice"))
    paused = project.launch(postgres_instance, "pay_ui")
    config = {"run_id": paused, "step": "sign_off", "decision": "approve", "by": "alice"}
    run_config = {"ops": {DECISION_OP: {"config": {**config, "reason": "ok"}}}}

    def decide(**kwargs):  # type: ignore[no-untyped-def]
        return gate_decision_job.execute_in_process(
            instance=postgres_instance, run_config=run_config, raise_on_error=False, **kwargs
        )

    assert not decide(tags={"dagster/user": "mallory@example.com"}).success
    assert not decide().success, "no user tag: nobody to check"
    monkeypatch.delenv(PRINCIPAL_TAG_ENV)
    assert not decide(tags={"dagster/user": LAUNCHPAD_USER}).success, "tag not vouched for"
    assert gate_state(postgres_instance, paused, "sign_off").status == "pending"
    monkeypatch.setenv(PRINCIPAL_TAG_ENV, "dagster/user")
    assert decide(tags={"dagster/user": LAUNCHPAD_USER}).success
    assert gate_state(postgres_instance, paused, "sign_off").status == "approved"


def test_a_decision_recorded_without_a_principal_does_not_count(project, postgres_instance):
    from dagster import AssetObservation

    frame = project.add("forged", "name: forged" + gate_with("alice"))
    paused = project.launch(postgres_instance, "forged")
    postgres_instance.add_dynamic_partitions("forged__sign_off__gate_runs", [paused])
    postgres_instance.report_runless_asset_event(
        AssetObservation(
            asset_key=gate_asset_key(frame.name, "sign_off"),
            partition=paused,
            metadata={
                "marigold/decision": "approve",
                "marigold/by": "alice",
                "marigold/reason": "typed by hand",
                "marigold/run_id": paused,
                "marigold/decided_at": time.time(),
            },
        )
    )
    assert gate_state(postgres_instance, paused, "sign_off").status == "pending"

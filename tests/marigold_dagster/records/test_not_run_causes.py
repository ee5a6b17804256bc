"""Each step that did not run names the real cause: one table of (step kind, cause) cases.

Every case runs one small template in process; the step under test sits where the cause reaches
it, and its summary line must name that cause, not a bystander.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from dagster import ConfigurableResource, InitResourceContext

from marigold_dagster.jobs.compiler import compile_frame
from marigold_dagster.records.run_summary import summarise_run
from marigold_dagster.template.loader import load_template

HEAD = """name: {name}
version: 1
models: {{worker: worker_model}}
budget: {{max_steps: 20, max_tokens: 10, max_cost_usd: 1, max_fanout: 4}}
steps:
  - {{name: start, uses: t.rows, with: {{n: 3}}}}
  - name: route
    kind: decision
    depends_on: [start]
    uses: t.route
    with: {{choose: [broken]}}
    branches: [idle, broken]
  - {{name: idle, uses: t.mark, depends_on: [route]}}
  - {{name: broken, uses: t.poison, with: {{bad_ids: [1]}}, depends_on: [route]}}
"""

# the step under test, by kind, placed below `{upstream}`
BELOW = {
    "task": "  - {{name: probe, uses: t.mark, depends_on: [{upstream}]}}\n",
    "batch": (
        "  - {{name: probe, kind: batch, batch: {{size: 2}}, uses: t.mark, "
        "depends_on: [{upstream}]}}\n"
    ),
    "decision": (
        "  - {{name: probe, kind: decision, uses: t.route, with: {{choose: [tail]}}, "
        "branches: [tail], depends_on: [{upstream}]}}\n"
        "  - {{name: tail, uses: t.mark, depends_on: [probe]}}\n"
    ),
    "gate": "  - {{name: probe, kind: gate, gate: {{prompt: ok?}}, depends_on: [{upstream}]}}\n",
    "converge": "  - {{name: probe, kind: converge, depends_on: [idle, {upstream}]}}\n",
}


@dataclass(frozen=True)
class Case:
    upstream: str  # what the probe depends on
    expected: str  # the probe's detail


CAUSES = {
    # the failed step is named, not the unchosen branch beside it (a converge over `idle`,
    # not chosen, and `broken`, failed, is the shape of the reported defect)
    "upstream_failed": Case("broken", "upstream 'broken' failed"),
    # two steps down, still the failed step
    "failure_further_up": Case("between", "upstream 'broken' failed"),
}
BETWEEN = "  - {name: between, uses: t.mark, depends_on: [broken]}\n"


def template(name: str, kind: str, case: Case) -> str:
    text = HEAD.format(name=name)
    if case.upstream == "between":
        text += BETWEEN
    return text + BELOW[kind].format(upstream=case.upstream)


@pytest.mark.parametrize("cause", CAUSES)
@pytest.mark.parametrize("kind", BELOW)
def test_a_step_that_did_not_run_names_the_real_cause(
    kind, cause, catalog, write_template, instance
):
    name = f"{kind}_{cause}"
    frame = load_template(write_template(name, template(name, kind, CAUSES[cause])), catalog)
    result = compile_frame(frame).execute_in_process(instance=instance, raise_on_error=False)
    summary = summarise_run(instance, result.run_id, frame)
    probe = summary.step("probe")
    assert probe.status == "not_run", summary.render()
    assert probe.detail == CAUSES[cause].expected, summary.render()


class ServerDown(ConfigurableResource):
    """A model client whose server cannot be reached when the run sets it up."""

    def setup_for_execution(self, context: InitResourceContext) -> None:
        raise ConnectionError("model server at http://127.0.0.1:9 refused the connection")


def test_a_resource_that_fails_setup_is_named_for_every_step(catalog, write_template, instance):
    text = HEAD.format(name="server_down") + "  - {name: ask, uses: t.ask, depends_on: [idle]}\n"
    frame = load_template(write_template("server_down", text), catalog)
    job = compile_frame(frame, resource_defs={"worker_model": ServerDown()})
    result = job.execute_in_process(instance=instance, raise_on_error=False)
    summary = summarise_run(instance, result.run_id, frame)
    for step in summary.steps:
        assert step.status == "not_run", summary.render()
        assert step.detail.startswith("not started: a resource failed its setup"), summary.render()
        assert "refused the connection" in step.detail

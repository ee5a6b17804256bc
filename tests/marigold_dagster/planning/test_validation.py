"""Fragment validation: one test per finding code, what an accepted fragment carries, and
properties over generated answers.

Acceptance is the only way a planned step reaches execution, so the properties check the
validator three ways: it never raises, whatever it is given; nothing it accepts breaks a rule
(checked by the simple, independent `rule_violations` below, not by the validator's code); and
everything built valid by construction is accepted.
"""

from __future__ import annotations

import json
import string
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from grammar_ops import Finding, Kind
from harness.scripted_planner import step
from marigold_dagster.planning.budget import (
    DEFAULT_ANSWER_TOKENS,
    ESTIMATED_PROMPT_TOKENS,
    BudgetStatus,
    BudgetUse,
)
from marigold_dagster.planning.validation import (
    FRAME_KEYS,
    PlanningScope,
    Verdict,
    validate_fragment,
)
from marigold_dagster.template.model import Budget
from tests.fuzz_budget import fuzz_examples
from tests.support.planning_scope import (
    CATALOG,
    COMPOSABLE,
    LOAD_ROWS,
    PRESETS,
    RESULTS,
    TEMPLATE_STEPS,
    make_scope,
)

SCOPE = make_scope()
COMPOSING = make_scope(allow_dynamic_composition=True, composable=COMPOSABLE)


def composed(id: str, entries: list[dict], depends_on: list[str] | None = None) -> dict:
    return {"id": id, "compose": entries, "depends_on": depends_on or [], "reason": "composed"}


def fragment(*steps: dict, done: bool = False, reasoning: str = "mark, then count") -> dict:
    return {"reasoning": reasoning, "steps": list(steps), "done": done}


def only(verdict: Verdict, code: str) -> Finding:
    """The single finding of `verdict`, which must have `code`."""
    assert not verdict.accepted
    assert [f.code for f in verdict.findings] == [code], [str(f) for f in verdict.findings]
    return verdict.findings[0]


def codes(verdict: Verdict) -> set[str]:
    return {finding.code for finding in verdict.findings}


# ---------------------------------------------------------------------------------------------
# SCHEMA


def test_text_that_is_not_json_is_a_schema_finding():
    finding = only(validate_fragment('{"reasoning": "x", "steps": [', SCOPE), "SCHEMA")
    assert finding.path == ()
    assert "the answer is not JSON" in finding.message


def test_json_text_is_parsed_and_validated_like_the_value():
    text = json.dumps(fragment(step("mark_all", "t.mark")))
    verdict = validate_fragment(text, SCOPE)
    assert verdict.accepted and verdict.fragment is not None
    assert [s.id for s in verdict.fragment.steps] == ["mark_all"]


def test_values_of_the_wrong_type_are_schema_findings_naming_the_expected_type():
    verdict = validate_fragment({"reasoning": 5, "steps": {"a": 1}, "done": "yes"}, SCOPE)
    assert not verdict.accepted
    found = {f.path: f for f in verdict.findings}
    assert codes(verdict) == {"SCHEMA"}
    assert set(found) == {("reasoning",), ("steps",), ("done",)}
    # The offending value and the expected type, not the schema library's wording around them.
    assert all(word in found["reasoning",].message for word in ("5", "string"))
    assert "array" in found["steps",].message
    assert all(word in found["done",].message for word in ("'yes'", "boolean"))


def test_a_step_field_of_the_wrong_type_is_located_at_that_field():
    bad = step("a", "t.mark")
    bad["depends_on"] = "load"
    finding = only(validate_fragment(fragment(bad), SCOPE), "SCHEMA")
    assert finding.path == ("steps", 0, "depends_on")
    assert all(word in finding.message for word in ("'load'", "array"))


def test_a_missing_required_key_is_a_schema_finding_listing_the_keys():
    answer = fragment(step("a", "t.mark"))
    del answer["done"]
    del answer["steps"][0]["reason"]
    verdict = validate_fragment(answer, SCOPE)
    found = {f.path: f.message for f in verdict.findings}
    assert codes(verdict) == {"SCHEMA"}
    assert "'done'" in found[()]
    assert found[()].endswith("; the keys here are: reasoning, steps, done")
    assert "'reason'" in found["steps", 0]
    assert "id, with, depends_on, reason, uses" in found["steps", 0]


def test_an_unexpected_key_is_a_schema_finding_listing_the_keys_allowed():
    bad = {**step("a", "t.mark"), "priority": 1}
    finding = only(validate_fragment(fragment(bad), SCOPE), "SCHEMA")
    assert finding.path == ("steps", 0)
    assert "'priority' was unexpected" in finding.message
    assert "the keys here are: id, with, depends_on, reason, uses" in finding.message


@pytest.mark.parametrize("as_text", [True, False], ids=["text", "value"])
def test_an_answer_nested_thousands_deep_is_a_schema_finding_not_a_crash(as_text):
    depth = 5000
    deep: Any = "leaf"
    for _ in range(depth):
        deep = [deep]
    answer: Any = fragment(step("a", "t.mark", extra=deep))
    if as_text:  # json.dumps itself cannot write it
        head = json.dumps(fragment(step("a", "t.mark", extra="LEAF")))
        answer = head.replace('"LEAF"', "[" * depth + '"leaf"' + "]" * depth)
    finding = only(validate_fragment(answer, SCOPE), "SCHEMA")
    assert "nests more than 64 levels deep" in finding.message
    assert "{reasoning, steps:" in finding.message


def test_a_steps_value_that_is_not_a_list_is_a_schema_finding_not_a_crash():
    for steps in (1, True, 2.5, None, "abc", {"id": "a"}):
        verdict = validate_fragment({"reasoning": "", "steps": steps, "done": False}, SCOPE)
        assert codes(verdict) == {"SCHEMA"}
        assert [f.path for f in verdict.findings] == [("steps",)]


def test_a_huge_value_is_not_echoed_in_full_into_the_findings():
    huge = "x" * 1_000_000
    verdict = validate_fragment(fragment(step(huge, huge), reasoning=huge), SCOPE)
    assert {"SCHEMA", "INVALID_ID", "UNKNOWN_CAPABILITY"} <= codes(verdict)
    assert all(len(f.message) < 1000 for f in verdict.findings)


# ---------------------------------------------------------------------------------------------
# Capabilities


def test_a_name_outside_the_catalog_is_unknown_capability_listing_what_is_allowed():
    finding = only(
        validate_fragment(fragment(step("wipe", "t.delete_everything")), SCOPE),
        "UNKNOWN_CAPABILITY",
    )
    assert finding.path == ("steps", 0, "uses")
    assert "handler 't.delete_everything' not found" in finding.message
    assert "allowed: " + ", ".join(sorted(PRESETS)) in finding.message


def test_a_catalog_capability_the_step_does_not_allow_is_not_allowed():
    assert "llm.classify" in CATALOG and "llm.classify" not in PRESETS
    finding = only(
        validate_fragment(fragment(step("sort", "llm.classify", field="text")), SCOPE),
        "NOT_ALLOWED",
    )
    assert finding.path == ("steps", 0, "uses")
    assert "handler 'llm.classify' not found" in finding.message
    assert "allowed: " + ", ".join(sorted(PRESETS)) in finding.message


@pytest.mark.parametrize("scope", [SCOPE, make_scope(allow_dynamic_composition=True)])
def test_compose_where_dynamic_composition_is_off_is_composition_not_allowed(scope):
    answer = fragment(composed("a", [{"use": "transform.filter", "with": {}}]))
    finding = only(validate_fragment(answer, scope), "COMPOSITION_NOT_ALLOWED")
    assert finding.path == ("steps", 0, "compose")
    assert "does not allow dynamic composition" in finding.message
    assert "use one of: acquire.read_table" in finding.message


def test_composing_a_primitive_outside_composable_is_not_allowed():
    answer = fragment(
        composed("a", [{"use": "transform.select", "with": {"fields": ["id"]}},
                       {"use": "llm.classify", "with": {}}])
    )  # fmt: skip
    finding = only(validate_fragment(answer, COMPOSING), "NOT_ALLOWED")
    assert finding.path == ("steps", 0, "compose", 1, "use")
    assert "primitive 'llm.classify' may not be composed here" in finding.message
    assert "composable: acquire.read_table, transform.filter, transform.select" in finding.message


def test_composing_a_name_outside_the_catalog_is_unknown_capability():
    answer = fragment(composed("a", [{"use": "t.nope", "with": {}}]))
    finding = only(validate_fragment(answer, COMPOSING), "UNKNOWN_CAPABILITY")
    assert finding.path == ("steps", 0, "compose", 0, "use")
    assert "composable: acquire.read_table" in finding.message


def test_bad_config_for_an_allowed_capability_is_invalid_config_at_the_field():
    answer = fragment(step("more", "t.explode", copies="many"))
    finding = only(validate_fragment(answer, SCOPE), "INVALID_CONFIG")
    assert finding.path == ("steps", 0, "with", "copies")
    assert "integer" in finding.message


def test_a_missing_required_config_field_is_invalid_config():
    finding = only(validate_fragment(fragment(step("n", "t.rows")), SCOPE), "INVALID_CONFIG")
    assert finding.path == ("steps", 0, "with", "n")


def test_a_capability_given_a_kind_it_does_not_accept_is_kind_mismatch():
    answer = fragment(step("more", "t.explode", ["earlier"], copies=2))
    finding = only(validate_fragment(answer, SCOPE), "KIND_MISMATCH")
    assert finding.path[:2] == ("steps", 0)
    assert "`t.explode` expects Records or Table, got Json" in finding.message


def test_kinds_flow_from_planned_step_to_planned_step():
    answer = fragment(
        step("words", "llm.generate", prompt="Say something"),
        step("more", "t.explode", ["words"], copies=2),
    )
    finding = only(validate_fragment(answer, SCOPE), "KIND_MISMATCH")
    assert finding.path[:2] == ("steps", 1)
    assert "got Json" in finding.message


# ---------------------------------------------------------------------------------------------
# Pins, paths, template inputs


def test_changing_a_pinned_key_is_pinned_config_naming_the_pinned_value():
    answer = fragment(step("some", "transform.filter", where="true"))
    finding = only(validate_fragment(answer, SCOPE), "PINNED_CONFIG")
    assert finding.path == ("steps", 0, "with")
    assert "the template pins ['where'] for 'transform.filter'" in finding.message
    assert "use the pinned values {'where': 'id < 2'}" in finding.message


def test_repeating_a_pinned_value_is_accepted():
    answer = fragment(step("some", "transform.filter", where="id < 2"))
    assert validate_fragment(answer, SCOPE).accepted


def test_giving_a_path_is_pinned_config():
    answer = fragment(step("read", "acquire.read_table", path="/etc/passwd"))
    finding = only(validate_fragment(answer, SCOPE), "PINNED_CONFIG")
    assert finding.path == ("steps", 0, "with", "path")
    assert "a plan cannot choose file paths; read results through depends_on" in finding.message


def test_a_composed_primitive_is_held_to_its_pins():
    answer = fragment(composed("a", [{"use": "transform.filter", "with": {"where": "true"}}]))
    finding = only(validate_fragment(answer, COMPOSING), "PINNED_CONFIG")
    assert finding.path == ("steps", 0, "compose", 0, "with")
    assert "use the pinned values {'where': 'id < 2'}" in finding.message


def test_a_composed_primitive_cannot_be_given_a_path():
    entries = [{"use": "acquire.read_table", "with": {"path": "/etc/passwd"}}]
    finding = only(validate_fragment(fragment(composed("a", entries)), COMPOSING), "PINNED_CONFIG")
    assert finding.path == ("steps", 0, "compose", 0, "with", "path")


def test_a_composed_primitive_gets_its_pinned_config():
    answer = fragment(composed("a", [{"use": "transform.filter", "with": {}}]))
    verdict = validate_fragment(answer, COMPOSING)
    assert verdict.accepted and verdict.fragment is not None
    (planned,) = verdict.fragment.steps
    assert planned.compose == ({"use": "transform.filter", "with": {"where": "id < 2"}},)
    assert planned.composition.steps[0].config.model_dump()["where"] == "id < 2"


@pytest.mark.parametrize(
    ("answer", "scope", "path"),
    [
        (fragment(step("read", "t.read_input", input="contracts")), SCOPE, ("steps", 0, "uses")),
        (
            fragment(composed("a", [{"use": "acquire.read_table", "with": {"input": "x"}}])),
            COMPOSING,
            ("steps", 0, "compose"),
        ),
    ],
    ids=["uses", "compose"],
)
def test_a_planned_step_cannot_read_template_inputs(answer, scope, path):
    finding = only(validate_fragment(answer, scope), "NOT_ALLOWED")
    assert finding.path == path
    assert "planned steps cannot read template inputs" in finding.message


def test_a_value_only_equal_to_a_pin_runs_with_the_pinned_value():
    answer = fragment(step("words", "llm.generate", prompt="Hi", include_input=0))
    verdict = validate_fragment(answer, SCOPE)
    assert verdict.accepted and verdict.fragment is not None
    assert verdict.fragment.steps[0].config["include_input"] is False


# ---------------------------------------------------------------------------------------------
# Frame and ids


def test_an_id_equal_to_a_template_step_is_a_frame_violation():
    finding = only(validate_fragment(fragment(step("finish", "t.mark")), SCOPE), "FRAME_VIOLATION")
    assert finding.path == ("steps", 0, "id")
    assert "'finish' is a template step" in finding.message
    assert "choose another id" in finding.message


@pytest.mark.parametrize(
    ("answer", "path", "key"),
    [
        ({**fragment(step("a", "t.mark")), "converge": ["a"]}, ("converge",), "converge"),
        ({**fragment(step("a", "t.mark")), "kind": "planning"}, ("kind",), "kind"),
        (
            fragment({**step("a", "t.mark"), "branches": ["x"]}),
            ("steps", 0, "branches"),
            "branches",
        ),
        (fragment({**step("a", "t.mark"), "kind": "converge"}), ("steps", 0, "kind"), "kind"),
        (fragment({**step("a", "t.mark"), "steps": []}), ("steps", 0, "steps"), "steps"),
    ],
)
def test_frame_keys_at_the_top_or_in_a_step_are_frame_violations(answer, path, key):
    finding = only(validate_fragment(answer, SCOPE), "FRAME_VIOLATION")
    assert finding.path == path
    assert f"`{key}` belongs to the template's frame" in finding.message
    assert "{id, uses|compose, with, depends_on, reason}" in finding.message


@pytest.mark.parametrize(
    "bad_id", ["1abc", "_a", "a-b", "a b", "émile", "a" * 49, "abc\n", ""], ids=repr
)
def test_an_id_not_matching_the_pattern_is_invalid_id(bad_id):
    finding = only(validate_fragment(fragment(step(bad_id, "t.mark")), SCOPE), "INVALID_ID")
    assert finding.path == ("steps", 0, "id")
    assert "must start with a letter and use only letters, digits and underscores" in (
        finding.message
    )


def test_an_id_used_twice_in_the_fragment_is_a_duplicate_id():
    answer = fragment(step("a", "t.mark"), step("a", "t.mark"))
    finding = only(validate_fragment(answer, SCOPE), "DUPLICATE_ID")
    assert finding.path == ("steps", 1, "id")
    assert "'a' is already used by an earlier step of this fragment" in finding.message
    assert "new, unique id" in finding.message


def test_an_id_equal_to_an_existing_result_is_a_duplicate_id():
    finding = only(validate_fragment(fragment(step("earlier", "t.mark")), SCOPE), "DUPLICATE_ID")
    assert finding.path == ("steps", 0, "id")
    assert "'earlier' is already used by an existing result" in finding.message


# ---------------------------------------------------------------------------------------------
# References and the graph


def test_depending_on_an_unknown_name_is_a_dangling_reference_listing_the_results():
    answer = fragment(step("a", "t.mark", ["load", "contracts_cleaned"]))
    finding = only(validate_fragment(answer, SCOPE), "DANGLING_REFERENCE")
    assert finding.path == ("steps", 0, "depends_on", 1)
    assert "'contracts_cleaned' is not a step or result" in finding.message
    assert "results available: a, earlier, load" in finding.message


def test_depending_on_a_template_step_that_is_not_visible_is_a_dangling_reference():
    finding = only(
        validate_fragment(fragment(step("a", "t.mark", ["hidden"])), SCOPE), "DANGLING_REFERENCE"
    )
    assert finding.path == ("steps", 0, "depends_on", 0)
    assert "'hidden' is a template step whose result this planning step cannot see" in (
        finding.message
    )
    assert "results available: a, earlier, load" in finding.message


def test_reading_a_result_that_is_not_in_depends_on_is_a_dangling_reference():
    answer = fragment(step("a", "transform.join", ["load"], reference="finish", on=["id"]))
    finding = only(validate_fragment(answer, SCOPE), "DANGLING_REFERENCE")
    assert finding.path == ("steps", 0, "with")
    assert "reads ['finish'] but does not depend on them" in finding.message


def test_reading_a_result_listed_in_depends_on_is_accepted():
    answer = fragment(
        step("a", "transform.join", ["load", "earlier"], reference="earlier", on=["id"])
    )
    assert validate_fragment(answer, SCOPE).accepted


@pytest.mark.parametrize(
    ("steps", "cycle"),
    [
        ([step("a", "t.mark", ["b"]), step("b", "t.mark", ["a"])], "a -> b -> a"),
        ([step("a", "t.mark", ["a"])], "a -> a"),
        (
            [step("a", "t.mark", ["c"]), step("b", "t.mark", ["a"]), step("c", "t.mark", ["b"])],
            "a -> c -> b -> a",
        ),
    ],
    ids=["two", "self", "three"],
)
def test_steps_depending_on_each_other_are_a_cycle(steps, cycle):
    finding = only(validate_fragment(fragment(*steps), SCOPE), "CYCLE")
    assert finding.path == ("steps",)
    assert f"steps depend on each other in a cycle: {cycle}" == finding.message


def test_a_chain_longer_than_max_depth_is_too_deep():
    chain = [step("a", "t.mark"), step("b", "t.mark", ["a"]), step("c", "t.mark", ["b"])]
    verdict = validate_fragment(fragment(*chain), make_scope(max_depth=2))
    finding = only(verdict, "TOO_DEEP")
    assert finding.path == ("steps", 2, "depends_on")
    assert "'c' sits at depth 3" in finding.message
    assert "allows depth 2" in finding.message


def test_more_steps_than_max_steps_is_too_many_steps():
    answer = fragment(*[step(f"s{i}", "t.mark") for i in range(4)])
    finding = only(validate_fragment(answer, make_scope(max_steps=3)), "TOO_MANY_STEPS")
    assert finding.path == ("steps",)
    assert "4 steps, but this planning step allows at most 3; merge or drop steps" in (
        finding.message
    )


def test_more_steps_at_one_depth_than_max_fanout_is_over_fanout():
    answer = fragment(*[step(f"s{i}", "t.mark") for i in range(3)], step("t", "t.mark", ["s0"]))
    finding = only(validate_fragment(answer, make_scope(max_fanout=2)), "OVER_FANOUT")
    assert finding.path == ("steps",)
    assert "3 steps at one depth would fan out past max_fanout 2" in finding.message
    assert "chain or merge steps" in finding.message


def test_more_children_of_one_step_than_max_children_is_too_many_children():
    # Two children of `a` pass max_children 2; three of `load` (implicitly, by no depends_on)
    # do not, whatever the width of the depth level.
    answer = fragment(
        step("a", "t.mark"),
        step("b", "t.mark"),
        step("c", "t.mark"),
        step("a1", "t.mark", ["a"]),
        step("a2", "t.mark", ["a"]),
    )
    finding = only(validate_fragment(answer, make_scope(max_children=2)), "TOO_MANY_CHILDREN")
    assert finding.message.startswith(
        "3 planned steps depend directly on 'load', but this planning step allows at most 2"
    )
    chained = fragment(
        step("a", "t.mark"), step("a1", "t.mark", ["a"]), step("a2", "t.mark", ["a"])
    )
    assert validate_fragment(chained, make_scope(max_children=2)).accepted


def test_a_plan_whose_terminal_step_lacks_a_contracted_column_is_output_contract():
    scope = make_scope(
        samples={"load": [{"id": 1, "trail": "load", "text": "a"}]},
        output_columns=("trail", "count", "planned_step"),
    )
    counted = fragment(step("c", "aggregate.count", by=["trail"]))
    assert validate_fragment(counted, scope).accepted
    narrowed = fragment(
        step("kept", "transform.filter"), step("ids", "transform.select", ["kept"], fields=["id"])
    )
    finding = only(validate_fragment(narrowed, scope), "OUTPUT_CONTRACT")
    assert finding.path == ("steps", 1)
    assert finding.message.startswith(
        "'ids' ends the plan, but its rows would lack ['count', 'trail'] (it produces ['id'])"
    )
    later = make_scope(samples=scope.samples, output_columns=("count",), last_phase=False)
    assert validate_fragment(narrowed, later).accepted, "a later phase may still add them"


# ---------------------------------------------------------------------------------------------
# Budget and emptiness


def status(*, steps: int = 0, tokens: int = 0, **budget: Any) -> BudgetStatus:
    ceilings = {"max_steps": 100, "max_tokens": 100_000, "max_cost_usd": 5.0, "max_fanout": 8}
    return BudgetStatus(Budget(**{**ceilings, **budget}), BudgetUse(steps=steps, tokens=tokens))


def test_a_plan_past_the_task_step_budget_is_over_budget():
    scope = make_scope(budget=status(steps=4, max_steps=5))
    answer = fragment(step("a", "t.mark"), step("b", "t.mark"))
    finding = only(validate_fragment(answer, scope), "OVER_BUDGET")
    assert finding.path == ("steps",)
    assert "past max_steps (6 of 5 steps)" in finding.message
    assert "the task has 1 steps, 100,000 tokens and $5.00 left" in finding.message


def test_a_plan_past_the_task_token_budget_is_over_budget():
    scope = make_scope(budget=status(tokens=1_000, max_tokens=3_000))
    answer = fragment(step("ask", "t.ask_each"))  # one call per row of `load`
    finding = only(validate_fragment(answer, scope), "OVER_BUDGET")
    expected = 1_000 + LOAD_ROWS * (ESTIMATED_PROMPT_TOKENS + DEFAULT_ANSWER_TOKENS)
    assert f"past max_tokens ({expected:,} of 3,000 tokens)" in finding.message
    assert "2,000 tokens" in finding.message
    assert "plan fewer or cheaper steps" in finding.message


def test_a_plan_within_the_budget_is_accepted():
    scope = make_scope(budget=status(steps=3, max_steps=5))
    assert validate_fragment(fragment(step("a", "t.mark"), step("b", "t.mark")), scope).accepted


def test_no_steps_without_done_is_empty_not_done():
    finding = only(validate_fragment(fragment(), SCOPE), "EMPTY_NOT_DONE")
    assert finding.path == ("steps",)
    assert "a fragment with no steps must set done: true" == finding.message


def test_done_with_no_steps_is_accepted():
    verdict = validate_fragment(fragment(done=True, reasoning="the goal is met"), SCOPE)
    assert verdict.accepted and verdict.fragment is not None
    assert verdict.fragment.done and verdict.fragment.steps == ()
    assert verdict.fragment.reasoning == "the goal is met"
    assert verdict.fragment.estimate == BudgetUse()


# ---------------------------------------------------------------------------------------------
# Accepted fragments


def test_a_valid_multi_level_fragment_carries_depths_kinds_configs_and_an_estimate():
    answer = fragment(
        step("ask", "t.ask_each"),
        step("essay", "llm.generate", ["ask"], prompt="Summarise the answers"),
        step("counts", "aggregate.count", ["ask"], by=["trail"]),
        step("after", "t.mark", ["essay", "counts"]),
        step("later", "t.mark", ["earlier"]),
        done=True,
    )
    verdict = validate_fragment(answer, make_scope(usd_per_token=0.001))
    assert verdict.accepted and verdict.fragment is not None, verdict.findings
    planned = {s.id: s for s in verdict.fragment.steps}
    assert {name: s.depth for name, s in planned.items()} == {
        "ask": 1,
        "later": 1,
        "essay": 2,
        "counts": 2,
        "after": 3,
    }
    assert [s.id for s in verdict.fragment.steps] == ["ask", "later", "essay", "counts", "after"]
    assert [s.id for s in verdict.fragment.by_depth(2)] == ["essay", "counts"]
    kinds = {name: (s.input_kind, s.output_kind) for name, s in planned.items()}
    assert kinds == {
        "ask": (Kind.RECORDS, Kind.RECORDS),
        "essay": (Kind.RECORDS, Kind.JSON),
        "counts": (Kind.RECORDS, Kind.TABLE),
        "after": (Kind.JSON, Kind.RECORDS),
        "later": (Kind.JSON, Kind.RECORDS),
    }
    assert planned["essay"].config == {
        "max_tokens": 100,
        "include_input": False,
        "prompt": "Summarise the answers",
    }
    assert planned["counts"].config == {"by": ["trail"]}
    assert planned["after"].depends_on == ("essay", "counts")
    assert planned["ask"].uses == "t.ask_each" and planned["ask"].compose is None
    assert planned["essay"].source == "llm.generate"
    ask_tokens = LOAD_ROWS * (ESTIMATED_PROMPT_TOKENS + DEFAULT_ANSWER_TOKENS)
    essay_tokens = ESTIMATED_PROMPT_TOKENS + 100
    assert planned["ask"].estimated_tokens == ask_tokens
    assert planned["essay"].estimated_tokens == essay_tokens
    assert planned["after"].estimated_tokens == 0
    estimate = verdict.fragment.estimate
    assert (estimate.steps, estimate.tokens) == (5, ask_tokens + essay_tokens)
    assert estimate.cost_usd == pytest.approx((ask_tokens + essay_tokens) * 0.001)
    assert verdict.fragment.done and verdict.fragment.reasoning == "mark, then count"


def test_a_step_may_depend_on_a_later_listed_step():
    answer = fragment(step("b", "t.mark", ["a"]), step("a", "t.mark"))
    verdict = validate_fragment(answer, SCOPE)
    assert verdict.accepted and verdict.fragment is not None
    assert [(s.id, s.depth) for s in verdict.fragment.steps] == [("a", 1), ("b", 2)]


def test_every_finding_is_reported_not_just_the_first():
    answer = fragment(
        step("a", "t.mark"),
        step("a", "t.mark"),
        step("b", "t.mark", ["nowhere"]),
        step("c", "transform.filter", where="true"),
    )
    verdict = validate_fragment(answer, SCOPE)
    assert codes(verdict) == {"DUPLICATE_ID", "DANGLING_REFERENCE", "PINNED_CONFIG"}


def test_schema_level_and_graph_level_findings_are_reported_together():
    answer = fragment(
        step("a", "t.delete_everything", ["b"]),
        step("b", "llm.classify", ["a"]),
        step("9c", "t.mark"),
        *[step(f"s{i}", "t.mark") for i in range(4)],
    )
    verdict = validate_fragment(answer, SCOPE)
    assert codes(verdict) == {
        "UNKNOWN_CAPABILITY",
        "NOT_ALLOWED",
        "INVALID_ID",
        "TOO_MANY_STEPS",
        "CYCLE",
    }
    assert len(verdict.findings) == len(set(verdict.findings)), "each finding is reported once"


# ---------------------------------------------------------------------------------------------
# Properties: the independent rule checker


def is_valid_id(value: Any) -> bool:
    letters = string.ascii_letters
    return (
        isinstance(value, str)
        and 1 <= len(value) <= 48
        and value[0] in letters
        and all(c in letters or c in string.digits or c == "_" for c in value)
    )


def same_json(a: Any, b: Any) -> bool:
    """Equal as JSON documents, types included (`1` is not `true`)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def rule_violations(answer: Any, scope: PlanningScope) -> list[str]:
    """Every fragment rule `answer` breaks, checked plainly and independently of the validator.

    Covers the frame, ids, references, the graph, bounds, allowed capabilities, pins and paths;
    not the catalog's own checks (config types, kinds), which the validator delegates.
    """
    if isinstance(answer, str):
        try:
            answer = json.loads(answer)
        except ValueError:
            return ["not JSON"]
    if not isinstance(answer, dict) or set(answer) != {"reasoning", "steps", "done"}:
        return ["not {reasoning, steps, done}"]
    steps = answer["steps"]
    if not isinstance(steps, list) or not all(isinstance(s, dict) for s in steps):
        return ["steps is not a list of objects"]
    problems = []
    if not isinstance(answer["done"], bool) or not isinstance(answer["reasoning"], str):
        problems.append("done or reasoning of the wrong type")
    if not steps and answer["done"] is not True:
        problems.append("empty but not done")
    if len(steps) > scope.max_steps:
        problems.append("too many steps")
    ids = [s.get("id") for s in steps]
    if len(set(map(repr, ids))) != len(ids):
        problems.append("duplicate id")
    graph: dict[str, list[str]] = {}
    for s in steps:
        sid = s.get("id")
        if not is_valid_id(sid):
            problems.append(f"invalid id {sid!r}")
            continue
        if sid in scope.template_steps or sid in scope.results:
            problems.append(f"id {sid} taken")
        if set(s) & FRAME_KEYS:
            problems.append("frame key in a step")
        deps = s.get("depends_on")
        if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
            problems.append("depends_on is not a list of names")
            continue
        for dep in deps:
            if dep not in ids and dep not in scope.results:
                problems.append(f"dangling {dep}")
        graph[sid] = [d for d in deps if d in ids]
        problems += config_violations(s, scope)
    if problems:
        return problems
    depths = longest_chains(graph)
    if depths is None:
        return ["cycle"]
    if max(depths.values(), default=0) > scope.max_depth:
        problems.append("too deep")
    per_depth = [list(depths.values()).count(d) for d in set(depths.values())]
    if max(per_depth, default=0) > scope.max_fanout:
        problems.append("over fanout")
    return problems


def config_violations(spec: Mapping[str, Any], scope: PlanningScope) -> list[str]:
    if "uses" in spec and "compose" in spec:
        return ["both uses and compose"]
    if "uses" in spec:
        uses = [(spec["uses"], spec.get("with"))]
        if spec["uses"] not in scope.presets:
            return [f"{spec['uses']!r} not allowed"]
    elif "compose" in spec:
        if not scope.allow_dynamic_composition or not isinstance(spec["compose"], list):
            return ["composition not allowed"]
        uses = [(e.get("use"), e.get("with")) for e in spec["compose"] if isinstance(e, dict)]
        if len(uses) != len(spec["compose"]) or not uses:
            return ["malformed compose"]
        if any(name not in scope.composable for name, _ in uses):
            return ["primitive not composable"]
    else:
        return ["neither uses nor compose"]
    problems = []
    for name, config in uses:
        if not isinstance(config, dict):
            problems.append("with is not an object")
            continue
        if "path" in config:
            problems.append("path given")
        pinned = scope.presets.get(name, {})
        if any(key in config and config[key] != value for key, value in pinned.items()):
            problems.append(f"pinned config of {name} changed")
    return problems


def longest_chains(graph: Mapping[str, list[str]]) -> dict[str, int] | None:
    """Each node's depth (1 + its deepest dependency), or None when the graph has a cycle."""
    depths: dict[str, int] = {}
    remaining = dict(graph)
    while remaining:
        ready = [n for n, deps in remaining.items() if all(d in depths for d in deps)]
        if not ready:
            return None
        for node in ready:
            depths[node] = 1 + max((depths[d] for d in remaining[node]), default=0)
            del remaining[node]
    return depths


def check_accepted(answer: Any, scope: PlanningScope, verdict: Verdict) -> None:
    """An accepted verdict breaks no rule and runs exactly the pinned configs it claims to."""
    assert verdict.fragment is not None
    assert rule_violations(answer, scope) == [], verdict.fragment
    graph = {
        s.id: [d for d in s.depends_on if d not in scope.results] for s in verdict.fragment.steps
    }
    depths = longest_chains(graph)
    assert depths == {s.id: s.depth for s in verdict.fragment.steps}
    for planned in verdict.fragment.steps:
        configs = (
            [(planned.uses, planned.config)]
            if planned.compose is None
            else [(e["use"], e["with"]) for e in planned.compose]
        )
        for name, config in configs:
            for key, value in scope.presets.get(name, {}).items():
                assert same_json(config[key], value), (name, key, config)
    if scope.budget is not None:
        assert not scope.budget.exceeded(verdict.fragment.estimate)


# ---------------------------------------------------------------------------------------------
# Properties: strategies

GARBAGE_NAMES = ["", "t.nope", "transform", "llm.generate ", "T.MARK", "⚙", "uses", "a" * 300]
CAPABILITY_NAMES = sorted({*PRESETS, *CATALOG.names(), *GARBAGE_NAMES})
NAMES = [*TEMPLATE_STEPS, *RESULTS, "a", "b", "c", "d", "nowhere", "a\n", "1x", "é"]
CONFIG_KEYS = sorted(
    {"path", "input", "reference", *(k for p in PRESETS.values() for k in p)}
    | {k for name in CATALOG.primitives for k in CATALOG.primitives[name].Config.model_fields}
    | {k for name in CATALOG.patterns for k in CATALOG.patterns[name].Config.model_fields}
)
STEP_KEYS = ["id", "uses", "compose", "with", "depends_on", "reason", *sorted(FRAME_KEYS), "x"]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["id < 2", "true", "trail", "id", "\x00", "a\n"])
    | st.integers(1_000, 20_000).map(lambda n: "x😀" * n)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8) | st.sampled_from(CONFIG_KEYS), inner, max_size=4)
    ),
    max_leaves=12,
)
ids = (
    st.sampled_from(NAMES)
    | st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,5}", fullmatch=True)
    | st.text(max_size=60)
)
configs = st.dictionaries(
    st.sampled_from(CONFIG_KEYS) | st.text(max_size=6), json_values, max_size=4
)
references = st.lists(st.sampled_from(NAMES) | ids, max_size=4)
entries = (
    st.fixed_dictionaries({"use": st.sampled_from(CAPABILITY_NAMES), "with": configs}) | json_values
)

step_like = st.fixed_dictionaries(
    {"id": ids, "depends_on": references | json_values, "reason": st.text(max_size=30)},
    optional={
        "uses": st.sampled_from(CAPABILITY_NAMES) | json_values,
        "with": configs | json_values,
        "compose": st.lists(entries, max_size=3) | json_values,
        "kind": json_values,
        "branches": json_values,
        "extra": json_values,
    },
)
fragment_like = st.fixed_dictionaries(
    {},
    optional={
        "reasoning": st.text(max_size=50) | json_values,
        "steps": st.lists(step_like | json_values, max_size=8) | json_values,
        "done": st.booleans() | json_values,
        "converge": json_values,
        "template": json_values,
        "notes": json_values,
    },
)
# Every catalog capability allowed and composable, unpinned: arbitrary configs reach every
# capability's own validation and every pattern's expansion.
WIDE = make_scope(
    presets={name: {} for name in CATALOG.names()},
    allow_dynamic_composition=True,
    composable=frozenset(CATALOG.primitives),
    max_steps=8,
    budget=status(steps=90),
)
SCOPES = [SCOPE, COMPOSING, WIDE, make_scope(max_steps=2, max_depth=1, max_fanout=1)]
# Well-formed steps with arbitrary configs, to get past the schema into every capability's
# own config validation and pattern expansion.
configured = st.fixed_dictionaries(
    {
        "reasoning": st.just(""),
        "steps": st.lists(
            st.fixed_dictionaries(
                {
                    "id": st.from_regex(r"[a-z]{1,3}", fullmatch=True),
                    "uses": st.sampled_from(CATALOG.names()),
                    "with": configs,
                    "depends_on": st.lists(st.sampled_from([*RESULTS, "a", "b"]), max_size=2),
                    "reason": st.just(""),
                }
            ),
            min_size=1,
            max_size=3,
        ),
        "done": st.booleans(),
    }
)
answers = (
    json_values
    | fragment_like
    | fragment_like.map(json.dumps)
    | configured
    | st.text(max_size=100)
    | st.binary(max_size=40)
)


def examples(ci_share: int) -> settings:
    return settings(
        max_examples=fuzz_examples(ci_share),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@examples(1000)
@given(answer=answers, scope=st.sampled_from(SCOPES))
def test_validation_never_raises_whatever_the_answer(answer, scope):
    verdict = validate_fragment(answer, scope)
    event("accepted" if verdict.accepted else "rejected")
    event(f"first finding: {verdict.findings[0].code if verdict.findings else None}")
    assert isinstance(verdict, Verdict)
    assert verdict.accepted == (not verdict.findings)
    assert all(f.code.isupper() and isinstance(f.path, tuple) for f in verdict.findings)


# ---------------------------------------------------------------------------------------------
# Properties: fragments valid by construction, and mutations of them

ROW_KINDS = {Kind.RECORDS, Kind.TABLE}
# capability -> (kinds it accepts or None for any, what it produces or None for its input,
# a strategy for a valid `with`). Written from the capability definitions, not the validator.
CHOICES: dict[str, tuple[set[Kind] | None, Kind | None, st.SearchStrategy]] = {
    "t.mark": (None, Kind.RECORDS, st.just({})),
    "t.rows": (None, Kind.RECORDS, st.builds(lambda n: {"n": n}, st.integers(0, 5))),
    "t.route": (None, Kind.DECISION, st.just({"choose": ["a"]})),
    "llm.generate": (
        None,
        Kind.JSON,
        st.builds(lambda p: {"prompt": p}, st.text(min_size=1, max_size=20))
        | st.just({"prompt": "Go", "max_tokens": 100}),
    ),
    "t.explode": (ROW_KINDS, Kind.RECORDS, st.builds(lambda n: {"copies": n}, st.integers(0, 3))),
    "t.ask_each": (ROW_KINDS, Kind.RECORDS, st.just({})),
    "transform.filter": (ROW_KINDS, None, st.just({}) | st.just({"where": "id < 2"})),
    "aggregate.count": (
        {Kind.RECORDS, Kind.TABLE, Kind.DOCUMENTS},
        Kind.TABLE,
        st.just({}) | st.just({"by": ["trail"]}),
    ),
}
valid_ids = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,47}", fullmatch=True).filter(
    lambda s: s not in TEMPLATE_STEPS and s not in RESULTS
)


@st.composite
def valid_fragments(draw: st.DrawFn, composing: bool) -> tuple[dict, PlanningScope]:
    """A fragment that breaks no rule and a scope whose bounds it fits."""
    names = draw(st.lists(valid_ids, max_size=8, unique=True))
    kinds = {name: kind for name, (kind, _) in RESULTS.items()}
    depths: dict[str, int] = {}
    steps = []
    for name in names:
        earlier = sorted(depths)
        deps = draw(
            st.lists(st.sampled_from([*earlier, *RESULTS]), max_size=3, unique=True)
            if earlier or RESULTS
            else st.just([])
        )
        depths[name] = 1 + max((depths[d] for d in deps if d in depths), default=0)
        given_kind = kinds[deps[0]] if deps else RESULTS["load"][0]
        fits = [
            c for c, (accepts, _, _) in CHOICES.items() if accepts is None or given_kind in accepts
        ]
        if composing and given_kind in ROW_KINDS and draw(st.booleans()):
            entries = draw(
                st.lists(
                    st.sampled_from(
                        [
                            {"use": "transform.filter", "with": {}},
                            {"use": "transform.select", "with": {"fields": ["id"]}},
                        ]
                    ),
                    min_size=1,
                    max_size=3,
                )
            )
            kinds[name] = given_kind
            spec = composed(name, entries, deps)
        else:
            uses = draw(st.sampled_from(fits))
            accepts, produces, config = CHOICES[uses]
            kinds[name] = produces or given_kind
            spec = step(name, uses, deps, **draw(config))
        spec["reason"] = draw(st.text(max_size=40))
        steps.append(spec)
    per_depth = [list(depths.values()).count(d) for d in set(depths.values())]
    scope = make_scope(
        max_steps=max(len(steps), draw(st.integers(1, 8))),
        max_depth=max(depths.values(), default=1),
        max_fanout=max(per_depth, default=1),
        allow_dynamic_composition=composing,
        composable=COMPOSABLE if composing else frozenset(),
        budget=draw(st.none() | st.just(status())),
    )
    done = draw(st.booleans()) or not steps
    answer = fragment(*steps, done=done, reasoning=draw(st.text(max_size=40)))
    return json.loads(json.dumps(answer)), scope


@examples(500)
@given(case=valid_fragments(composing=False) | valid_fragments(composing=True))
def test_every_fragment_valid_by_construction_is_accepted(case):
    answer, scope = case
    assert rule_violations(answer, scope) == []
    verdict = validate_fragment(answer, scope)
    assert verdict.accepted, [str(f) for f in verdict.findings]
    check_accepted(answer, scope, verdict)


def _mutations(answer: dict, scope: PlanningScope, draw: st.DrawFn) -> PlanningScope:
    """Break `answer` (in place) or tighten `scope` in one of many ways; return the scope."""
    steps = answer["steps"]
    kind = draw(st.integers(0, 13))
    if steps:
        target = draw(st.sampled_from(steps))
        other = draw(st.sampled_from(steps))
    if kind == 0 and steps:
        target["id"] = draw(st.sampled_from(NAMES) | ids | st.just(other["id"]))
    elif kind == 1 and steps:
        target["depends_on"] = [*target["depends_on"], draw(st.sampled_from([*NAMES, other["id"]]))]
    elif kind == 2 and steps and "uses" in target:
        target["uses"] = draw(st.sampled_from(CAPABILITY_NAMES))
    elif kind == 3 and steps and "with" in target:
        target["with"][draw(st.sampled_from(CONFIG_KEYS))] = draw(json_values)
    elif kind == 4 and steps and "uses" in target:
        target["uses"] = draw(st.sampled_from(sorted(PRESETS)))
        pinned = PRESETS[target["uses"]]
        if pinned:
            key = draw(st.sampled_from(sorted(pinned)))
            target["with"][key] = draw(st.sampled_from([1, 0, True, False, "true", 100.0, 101]))
    elif kind == 5 and steps:
        target[draw(st.sampled_from(sorted(FRAME_KEYS)))] = draw(json_values)
    elif kind == 6:
        answer[draw(st.sampled_from(sorted(FRAME_KEYS - {"steps"})))] = draw(json_values)
    elif kind == 7 and steps and isinstance(target.get("compose"), list):
        target["compose"].append({"use": draw(st.sampled_from(CAPABILITY_NAMES)), "with": {}})
    elif kind == 8 and steps and isinstance(target.get("compose"), list):
        entry = draw(st.sampled_from(target["compose"]))
        entry["with"][draw(st.sampled_from(["path", "where", "input", "fields"]))] = draw(
            json_values
        )
    elif kind == 9:
        field = draw(st.sampled_from(["max_steps", "max_depth", "max_fanout"]))
        value = max(1, getattr(scope, field) - draw(st.integers(1, 3)))
        scope = make_scope(**{**_scope_fields(scope), field: value})
    elif kind == 10:
        tight = status(steps=draw(st.integers(95, 100)), tokens=draw(st.integers(0, 100_000)))
        scope = make_scope(**{**_scope_fields(scope), "budget": tight})
    elif kind == 11 and steps:
        target["depends_on"] = [other["id"]]
        other["depends_on"] = [*other["depends_on"], target["id"]]
    elif kind == 12:
        answer["done"] = False
        answer["steps"] = draw(st.just([]) | st.just(steps))
    elif kind == 13 and steps:
        if "uses" in target:
            target["compose"] = [{"use": "transform.filter", "with": {}}]
        else:
            target["uses"] = "t.mark"
    return scope


def _scope_fields(scope: PlanningScope) -> dict[str, Any]:
    names = ["max_steps", "max_depth", "max_fanout", "allow_dynamic_composition", "composable"]
    return {**{name: getattr(scope, name) for name in names}, "budget": scope.budget}


@st.composite
def mutated_fragments(draw: st.DrawFn) -> tuple[dict, PlanningScope]:
    answer, scope = draw(valid_fragments(composing=draw(st.booleans())))
    answer = json.loads(json.dumps(answer))
    for _ in range(draw(st.integers(1, 3))):
        scope = _mutations(answer, scope, draw)
    return answer, scope


@examples(1500)
@given(case=mutated_fragments())
def test_no_fragment_that_breaks_a_rule_is_ever_accepted(case):
    answer, scope = case
    verdict = validate_fragment(answer, scope)
    event("accepted" if verdict.accepted else "rejected")
    if verdict.accepted:
        check_accepted(answer, scope, verdict)
    else:
        assert verdict.findings
    if rule_violations(answer, scope):
        assert not verdict.accepted

"""decide.rules and decide.model produce Decisions with reasons."""

from __future__ import annotations

import pytest

from grammar_ops import CompositionError, Decision, Kind, PrimitiveError, standard_catalog

ROUTE = {
    "rules": [{"if": "count(label == 'high') > 0", "then": ["deep_review"]}],
    "else": ["summary"],
}


def run(uses, config, value, ctx):
    return standard_catalog().resolve(uses, config).run(value, ctx).value


def test_rules_config_is_the_template_yaml_shape(make_ctx, sales_table):
    composition = standard_catalog().resolve("decide.rules", ROUTE)
    assert composition.output_kind(Kind.TABLE) is Kind.DECISION
    assert composition.spec()[0]["with"]["rules"][0]["if"] == "count(label == 'high') > 0"
    assert standard_catalog().compose(composition.spec())  # the spec round-trips
    decision = composition.run(sales_table, make_ctx()).value
    assert decision == Decision(
        branches=["deep_review"],
        reason="rule 1 `count(label == 'high') > 0` matched -> ['deep_review']",
    )


def test_rules_else(make_ctx, sales_table):
    low = sales_table.filter(sales_table["label"].to_numpy(zero_copy_only=False) == "low")
    decision = run("decide.rules", ROUTE, low, make_ctx())
    assert decision.branches == ["summary"] and "no rule matched" in decision.reason
    assert run("decide.rules", {"rules": ROUTE["rules"]}, [], make_ctx()).branches == []


def test_rules_first_match_and_all_matching(make_ctx, sales_table):
    config = {
        "rules": [
            {"if": "count() > 100", "then": ["a"], "name": "many"},
            {"if": "avg(amount) > 0", "then": ["b", "a"]},
            {"if": "count() > 1e9", "then": ["c"]},
        ]
    }
    first = run("decide.rules", config, sales_table, make_ctx())
    assert first.branches == ["a"] and first.reason.startswith("rule 1 (many)")
    union = run("decide.rules", {**config, "mode": "all_matching"}, sales_table, make_ctx())
    assert union.branches == ["a", "b"] and "rule 2" in union.reason


def test_rules_config_errors():
    catalog = standard_catalog()
    with pytest.raises(CompositionError, match="outside an aggregate"):
        catalog.resolve("decide.rules", {"rules": [{"if": "label == 'high'", "then": ["x"]}]})
    with pytest.raises(CompositionError, match=r"\^\[A-Za-z0-9_\]\+\$"):
        catalog.resolve("decide.rules", {"rules": [{"if": "count() > 0", "then": ["bad name"]}]})
    with pytest.raises(CompositionError) as error:
        catalog.resolve("decide.rules", {"rules": [{"iff": "count() > 0", "then": ["a"]}]})
    found = {(f.code, f.path[-1]) for f in error.value.findings}
    assert found == {("INVALID_CONFIG", "if"), ("INVALID_CONFIG", "iff")}  # missing, unknown


def test_rules_runtime_error(make_ctx):
    with pytest.raises(PrimitiveError, match="decide.rules rule 1"):
        run(
            "decide.rules",
            {"rules": [{"if": "sum(label) > 0", "then": ["a"]}]},
            [{"label": "x"}],
            make_ctx(),
        )


def test_model_decision(make_ctx, fake_model, sales_table):
    config = {"question": "Which review?", "branches": {"summary": "routine", "deep_review": "x"}}
    ctx = make_ctx()
    decision = run("decide.model", config, [{"note": "needs deep_review"}], ctx)
    assert decision.branches == ["deep_review"] and "fake-model" in decision.reason
    call = fake_model.calls[-1]
    assert call.purpose == "decide" and call.choices == ("summary", "deep_review")
    assert call.choice_descriptions == {"summary": "routine", "deep_review": "x"}
    assert ctx.usage.requests == 1
    big = run("decide.model", {**config, "max_input_chars": 100}, sales_table, ctx)
    assert big.branches == ["summary"] and len(fake_model.calls[-1].subject) < 200
    assert standard_catalog().resolve("decide.model", config).model_roles == {"worker"}


def test_model_decision_failure(make_ctx):
    ctx = make_ctx()
    with pytest.raises(PrimitiveError, match="1 of 1 model calls failed"):
        run("decide.model", {"question": "q", "branches": ["a", "b"]}, [{"x": "FAIL"}], ctx)
    assert ctx.usage.failures == 1
    with pytest.raises(PrimitiveError, match="roles bound are: none"):
        run("decide.model", {"question": "q", "branches": ["a", "b"]}, [], make_ctx(models={}))

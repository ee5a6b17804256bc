"""Expressions and JMESPath selects are bounded in memory and time, each limit named.

Every attack here ran for minutes or allocated gigabytes before; each now fails at once with an
error naming the limit it reached. Where a limit is a time, the test lowers it instead of waiting.
"""

from __future__ import annotations

import pytest

from grammar_ops import CompositionError, PrimitiveError, expressions, standard_catalog
from grammar_ops.expressions import ExpressionError, parse_expression, search_jmespath

# ------------------------------------------------------------------------- row expressions


@pytest.mark.parametrize(
    ("text", "row", "limit"),
    [
        ("'%1000000000d' % 1", {}, "MAX_FORMAT_WIDTH"),  # 1 GB per row before
        ("'%.1000000000f' % x", {"x": 1.5}, "MAX_FORMAT_WIDTH"),
        ("'%(a)1000000s' % r", {"r": {"a": 1}}, "MAX_FORMAT_WIDTH"),
        ("'%*d' % [5, 1]", {}, "MAX_FORMAT_WIDTH"),
        ("fmt % 1", {"fmt": "%2000d"}, "MAX_FORMAT_WIDTH"),  # the format can come from data
        ("round(x, -999999999)", {"x": 5}, "MAX_ROUND_DIGITS"),  # spun forever before
        ("round(x, 1000)", {"x": 5}, "MAX_ROUND_DIGITS"),
        ("s + s + s", {"s": "a" * 400_000}, "MAX_STRING_LENGTH"),
        ("(s + '%s') % s", {"s": "a" * 600_000}, "MAX_STRING_LENGTH"),
        ("l + l", {"l": list(range(60_000))}, "MAX_LIST_LENGTH"),
        ("x * x * x * x", {"x": 10**1000}, "MAX_INT_BITS"),
    ],
)
def test_row_expressions_stop_at_a_named_limit(text, row, limit):
    with pytest.raises(ExpressionError, match=limit):
        parse_expression(text).evaluate_row(row)


@pytest.mark.parametrize(
    ("text", "row", "value"),
    [
        ("'%5.2f' % x", {"x": 3.14159}, " 3.14"),
        ("'%05d' % x", {"x": 42}, "00042"),
        ("'%d%%' % x", {"x": 1}, "1%"),
        ("round(x, 2)", {"x": 2.345}, 2.35),
        ("round(x, -2)", {"x": 1234}, 1200),
        ("round(x)", {"x": 2.6}, 3),
        ("a + b", {"a": "x" * 1000, "b": "y"}, "x" * 1000 + "y"),
    ],
)
def test_ordinary_values_are_untouched(text, row, value):
    assert parse_expression(text).evaluate_row(row) == value


def test_a_row_deadline_holds_without_a_step_timeout(monkeypatch):
    monkeypatch.setattr(expressions, "MAX_ROW_SECONDS", -1.0)
    with pytest.raises(ExpressionError, match="MAX_ROW_SECONDS"):
        parse_expression("a + b").evaluate_row({"a": 1, "b": 2})
    with pytest.raises(ExpressionError, match="MAX_ROW_SECONDS"):
        parse_expression("sum(a + 1)", aggregate=True).evaluate_rows([{"a": 1}])


def test_a_transform_fails_cleanly_on_a_format_bomb(make_ctx):
    composition = standard_catalog().resolve("transform.derive", {"fields": {"x": "'%9999d' % n"}})
    with pytest.raises(PrimitiveError, match="MAX_FORMAT_WIDTH"):
        composition.run([{"n": 1}], make_ctx())


# ------------------------------------------------------------------------------- JMESPath

DOUBLING = "{a:@,b:@}"


def doubling(levels: int) -> str:
    """Each level puts its input in two places: 2**levels values written out."""
    return ".".join([DOUBLING] * levels)


@pytest.mark.parametrize(
    ("select", "limit"),
    [
        (doubling(24) + " | " + ".".join(["*"] * 24), "MAX_JMESPATH_SIZE"),  # minutes before
        (doubling(40), "MAX_JMESPATH_SIZE"),  # instant before, then hung whoever wrote it out
        (doubling(30) + " | to_string(@)", "MAX_JMESPATH_SIZE"),
        (doubling(24) + " == " + doubling(24), "MAX_JMESPATH_SIZE"),
        ("[@,@]" + "|[@,@]" * 29 + "|" + "[]" * 30 + "|length(@)", "MAX_JMESPATH_SIZE"),
        ("a" + ".a" * 600, "MAX_JMESPATH_LENGTH"),
        ("[" + ",".join("a" * 1 for _ in range(400)) + "]", "MAX_JMESPATH_NODES"),
    ],
    ids=["values-projection", "result", "to_string", "compare", "flatten", "length", "nodes"],
)
def test_jmespath_stops_at_a_named_limit(select, limit):
    with pytest.raises(ExpressionError, match=limit):
        search_jmespath(select, {"x": 1})


def test_jmespath_work_is_counted():
    data = {"items": [[list(range(40)) for _ in range(200)] for _ in range(200)]}
    select = "items[*][*][*]"  # 1.6 M values, three projections deep
    assert len(search_jmespath("items[*][*]", data)) == 200
    with pytest.raises(ExpressionError, match="MAX_JMESPATH_OPERATIONS"):
        search_jmespath(select + " | [][][] | [*].to_string(@) | [*].length(@)", data)


def test_jmespath_deadline_holds_without_a_step_timeout(monkeypatch):
    monkeypatch.setattr(expressions, "MAX_JMESPATH_SECONDS", -1.0)
    with pytest.raises(ExpressionError, match="MAX_JMESPATH_SECONDS"):
        search_jmespath("items[*].id", {"items": [{"id": i} for i in range(5000)]})


def test_ordinary_selects_are_untouched():
    data = {"data": {"items": [{"id": i, "tags": ["a", "b"]} for i in range(1000)]}}
    assert search_jmespath("data.items[?id < `3`].{i: id, t: tags[0]}", data) == [
        {"i": 0, "t": "a"},
        {"i": 1, "t": "a"},
        {"i": 2, "t": "a"},
    ]
    assert search_jmespath("length(data.items[*].tags[])", data) == 2000
    assert search_jmespath("[data.items[0].id, data.items[1].id]", data) == [0, 1]


def test_select_limits_are_config_errors():
    with pytest.raises(CompositionError, match="MAX_JMESPATH_LENGTH"):
        standard_catalog().resolve("transform.to_records", {"select": "a" + ".a" * 600})


def test_to_records_fails_cleanly_on_a_doubling_select(make_ctx):
    composition = standard_catalog().resolve("transform.to_records", {"select": doubling(30)})
    with pytest.raises(PrimitiveError, match="MAX_JMESPATH_SIZE"):
        composition.run({"x": 1}, make_ctx())


# ------------------------------------------------------------------------ nesting and parsing


@pytest.mark.parametrize(
    "text",
    [
        "x" + "[0]" * 600,  # ast.unparse of the refused node recursed past Python's limit
        "-" * 1900 + "x",
        "[" * 199 + "]" * 199,
        "len(" * 300 + "x" + ")" * 300,
        "a" + ".b" * 900,
    ],
    ids=["subscripts", "unary", "lists", "calls", "attributes"],
)
def test_deep_expressions_are_config_errors_not_crashes(text):
    with pytest.raises(
        CompositionError, match="not allowed|not a valid|nesting deeper|nests too deeply"
    ):
        standard_catalog().resolve("transform.filter", {"where": text})
    with pytest.raises(ExpressionError):
        parse_expression(text, aggregate=True)


def test_deep_jmespath_is_a_config_error_not_a_crash():
    # jmespath's parser recursed past Python's limit on this, inside config validation.
    with pytest.raises(CompositionError, match="nests too deeply"):
        standard_catalog().resolve("transform.to_records", {"select": "!" * 999 + "a"})

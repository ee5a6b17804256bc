"""Declarative expressions: the only logic a template or a plan may write into a config.

The syntax is a small subset of Python expressions. Text is parsed with
`ast.parse(text, mode="eval")` and the tree is interpreted node by node from a whitelist; nothing
is compiled to code or handed to Python's evaluator.

- Row expressions read one row's fields: `amount > 1000 and region == 'EU'`,
  `lower(coalesce(country, '')) in ['de', 'fr']`.
- Aggregate expressions read all rows through aggregate functions:
  `count(label == 'high') > 0`, `avg(amount) >= 10 and count() < 5000`.

Null semantics follow SQL in spirit: a missing field is null, arithmetic with null is null,
ordering comparisons with null are false, division by zero is null, aggregates skip nulls.

    >>> parse_expression("amount * 2 > 10").evaluate_row({"amount": 6})
    True
    >>> parse_expression("count(label == 'high')", aggregate=True).evaluate_rows(
    ...     [{"label": "high"}, {"label": "low"}])
    1
"""

from __future__ import annotations

import ast
import json
import operator
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any

import jmespath
import jmespath.functions
import jmespath.parser
import jmespath.visitor
from pydantic import AfterValidator

from grammar_ops.findings import GrammarError

MAX_LENGTH = 2000
MAX_DEPTH = 40
MAX_STRING_LENGTH = 1_000_000  # characters in a string an expression builds
MAX_LIST_LENGTH = 100_000  # items in a list an expression builds
MAX_FORMAT_WIDTH = 1000  # width and precision in a `'%5.2f' % x` format
MAX_ROUND_DIGITS = 100  # |digits| in round(x, digits)
MAX_INT_BITS = 10_000  # bits in an integer an expression builds (about 3,000 digits)
MAX_ROW_SECONDS = 1.0  # wall clock per row an expression is evaluated on

Row = Mapping[str, Any]
RowFn = Callable[[Row], Any]
TableFn = Callable[[Sequence[Row]], Any]

_CONSTANT_NAMES = {"true": True, "false": False, "null": None}


class ExpressionError(GrammarError, ValueError):
    """An expression is malformed, uses something not allowed, or failed on a row."""


def _no_null(fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapped(*args: Any) -> Any:
        return None if any(a is None for a in args) else fn(*args)

    return wrapped


def _coalesce(*args: Any) -> Any:
    return next((a for a in args if a is not None), None)


def _number(value: Any) -> float | None:
    if value is None or value == "":
        return None
    return float(value)


def _round(value: Any, digits: Any = None) -> Any:
    if digits is None:
        return round(value)
    if not isinstance(digits, int) or abs(digits) > MAX_ROUND_DIGITS:
        raise ValueError(
            f"round() digits must be a whole number from -{MAX_ROUND_DIGITS} to "
            f"{MAX_ROUND_DIGITS} (MAX_ROUND_DIGITS), got {str(digits)[:40]}"
        )
    return round(value, digits)


# A printf-style conversion: %[(key)][flags][width][.precision][length]type
_CONVERSION = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d*))?[hlL]?(.)?", re.DOTALL)


def _format(template: str, values: Any) -> str:
    """`template % values` with every width and precision held to MAX_FORMAT_WIDTH."""
    for match in _CONVERSION.finditer(template):
        for part in match.group(1, 2):
            if part == "*" or (part and int(part) > MAX_FORMAT_WIDTH):
                raise ValueError(
                    f"format `{match.group()[:40]}` has a `*` width, or a width or precision over "
                    f"{MAX_FORMAT_WIDTH} (MAX_FORMAT_WIDTH)"
                )
    return template % values


def _check_size(value: Any) -> Any:
    """`value` when it is within the size limits for values an expression builds."""
    if isinstance(value, str) and len(value) > MAX_STRING_LENGTH:
        raise ValueError(
            f"the result is a string of {len(value)} characters, over {MAX_STRING_LENGTH} "
            "(MAX_STRING_LENGTH)"
        )
    if isinstance(value, list) and len(value) > MAX_LIST_LENGTH:
        raise ValueError(
            f"the result is a list of {len(value)} items, over {MAX_LIST_LENGTH} (MAX_LIST_LENGTH)"
        )
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise ValueError(f"the result is an integer over {MAX_INT_BITS} bits (MAX_INT_BITS)")
    if time.monotonic() > _clock.deadline:
        raise ValueError(
            f"evaluation ran longer than {MAX_ROW_SECONDS} s per row (MAX_ROW_SECONDS)"
        )
    return value


class _Clock(threading.local):
    deadline = float("inf")


_clock = _Clock()


def _contains(haystack: Any, needle: Any) -> bool:
    return haystack is not None and needle is not None and needle in haystack


# name -> (function, min args, max args); row functions work on one row's values.
ROW_FUNCTIONS: dict[str, tuple[Callable[..., Any], int, int]] = {
    "len": (_no_null(len), 1, 1),
    "lower": (_no_null(str.lower), 1, 1),
    "upper": (_no_null(str.upper), 1, 1),
    "strip": (_no_null(str.strip), 1, 1),
    "contains": (_contains, 2, 2),
    "startswith": (_no_null(str.startswith), 2, 2),
    "endswith": (_no_null(str.endswith), 2, 2),
    "coalesce": (_coalesce, 1, 16),
    "is_null": (lambda value: value is None, 1, 1),
    "abs": (_no_null(abs), 1, 1),
    "round": (_no_null(_round), 1, 2),
    "number": (_number, 1, 1),
    "string": (_no_null(str), 1, 1),
}


def _values(rows: Sequence[Row], fn: RowFn) -> list[Any]:
    return [v for v in (fn(row) for row in rows) if v is not None]


def _count(rows: Sequence[Row], fn: RowFn | None) -> int:
    return len(rows) if fn is None else sum(1 for row in rows if fn(row))


def _avg(values: list[Any]) -> Any:
    return sum(values) / len(values) if values else None


# name -> reducer over the non-null values of the argument; `count` is handled on its own.
AGGREGATE_FUNCTIONS: dict[str, Callable[[list[Any]], Any]] = {
    "count": len,
    "count_distinct": lambda values: len(set(values)),
    "sum": sum,
    "min": lambda values: min(values) if values else None,
    "max": lambda values: max(values) if values else None,
    "avg": _avg,
    "any": lambda values: any(values),
    "all": lambda values: all(values),
}

_BINARY: dict[type[ast.operator], tuple[str, Callable[[Any, Any], Any]]] = {
    ast.Add: ("+", operator.add),
    ast.Sub: ("-", operator.sub),
    ast.Mult: ("*", operator.mul),
    ast.Div: ("/", operator.truediv),
    ast.FloorDiv: ("//", operator.floordiv),
    ast.Mod: ("%", operator.mod),
}

_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: b is not None and a in b,
    ast.NotIn: lambda a, b: b is None or a not in b,
    ast.Is: operator.is_,
    ast.IsNot: operator.is_not,
}

ALLOWED = (
    "field names (`amount`, nested `customer.country`, or `field('name with spaces')`), "
    "constants (numbers, 'strings', true/false/null), lists `[...]`, comparisons "
    "(== != < <= > >= in, not in, is null), and/or/not, arithmetic (+ - * / // %), "
    "`a if cond else b`, row functions "
    f"({', '.join(sorted(ROW_FUNCTIONS))}) and, in aggregate expressions only, aggregate "
    f"functions ({', '.join(sorted(AGGREGATE_FUNCTIONS))})"
)


@dataclass(frozen=True)
class Expression:
    """A parsed, whitelisted expression ready to evaluate.

    Attributes:
        text: the source text.
        aggregate: True for an aggregate expression (evaluate with `evaluate_rows`).
        fields: the top-level field names it reads.
    """

    text: str
    aggregate: bool
    fields: frozenset[str]
    _row_fn: RowFn | None
    _table_fn: TableFn | None

    def evaluate_row(self, row: Row) -> Any:
        """The value of a row expression for one row.

        Raises:
            ExpressionError: when an operation fails on this row's values (e.g. 'a' < 1).
        """
        if self._row_fn is None:
            raise ExpressionError(f"`{self.text}` is an aggregate expression; use evaluate_rows")
        try:
            _clock.deadline = time.monotonic() + MAX_ROW_SECONDS
            return self._row_fn(row)
        except RecursionError:
            raise ExpressionError(f"`{self.text}` nests too deeply to evaluate") from None
        except (TypeError, ValueError, AttributeError, ArithmeticError) as error:
            raise ExpressionError(f"`{self.text}` failed: {error}") from None

    def evaluate_rows(self, rows: Sequence[Row]) -> Any:
        """The value of an aggregate expression over all rows.

        Raises:
            ExpressionError: when an operation fails on the values.
        """
        if self._table_fn is None:
            raise ExpressionError(f"`{self.text}` is a row expression; use evaluate_row")
        try:
            _clock.deadline = time.monotonic() + MAX_ROW_SECONDS * max(1, len(rows))
            return self._table_fn(rows)
        except RecursionError:
            raise ExpressionError(f"`{self.text}` nests too deeply to evaluate") from None
        except (TypeError, ValueError, AttributeError, ArithmeticError) as error:
            raise ExpressionError(f"`{self.text}` failed: {error}") from None


@lru_cache(maxsize=512)
def parse_expression(text: str, *, aggregate: bool = False) -> Expression:
    """Parse `text` into an `Expression`, checking every node against the whitelist.

    Raises:
        ExpressionError: with the column of the offending part and what is allowed.
    """
    if not isinstance(text, str) or not text.strip():
        raise ExpressionError("an expression must be a non-empty string")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"expression is {len(text)} characters long; at most {MAX_LENGTH}")
    try:
        tree = ast.parse(text.strip(), mode="eval")
        builder = _Builder(text.strip())
        if aggregate:
            table_fn = builder.table(tree.body, 0)
            return Expression(text, True, frozenset(builder.fields), None, table_fn)
        row_fn = builder.row(tree.body, 0)
        return Expression(text, False, frozenset(builder.fields), row_fn, None)
    except SyntaxError as error:
        raise ExpressionError(
            f"`{text}` is not a valid expression at column {error.offset or 0}: {error.msg}. "
            f"Allowed: {ALLOWED}"
        ) from None
    except (RecursionError, MemoryError):
        raise ExpressionError(
            f"`{text[:80]}...` nests too deeply to read; at most {MAX_DEPTH} levels (MAX_DEPTH)"
        ) from None


def check_row_expression(text: str) -> str:
    """A pydantic validator: `text` if it parses as a row expression (ValueError otherwise)."""
    parse_expression(text)
    return text


def check_aggregate_expression(text: str) -> str:
    """A pydantic validator: `text` if it parses as an aggregate expression."""
    parse_expression(text, aggregate=True)
    return text


def literal(value: Any) -> str:
    """The expression text of a constant (for patterns that build expressions from config)."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, int | float | str):
        return json.dumps(value)
    raise ExpressionError(f"{value!r} is not a constant; use a number, a string, true/false/null")


class _Builder:
    """Turns whitelisted AST nodes into closures; rejects everything else with a position."""

    def __init__(self, text: str):
        self.text = text
        self.fields: set[str] = set()
        self.in_aggregate_argument = False

    def source(self, node: ast.AST) -> str:
        """The text of `node`, cut short (read from the source: no recursion over the tree)."""
        segment = ast.get_source_segment(self.text, node) or type(node).__name__
        return segment if len(segment) <= 60 else segment[:57] + "..."

    def fail(self, node: ast.AST, what: str) -> ExpressionError:
        column = getattr(node, "col_offset", 0) + 1
        return ExpressionError(
            f"`{self.text}` at column {column}: {what} is not allowed. Allowed: {ALLOWED}"
        )

    # Row expressions ---------------------------------------------------------------------

    def row(self, node: ast.AST, depth: int) -> RowFn:
        if depth > MAX_DEPTH:
            raise self.fail(node, f"nesting deeper than {MAX_DEPTH}")
        return self._generic(node, depth, self.row, in_aggregate=False)

    # Aggregate expressions: fields only inside aggregate functions ---------------------------

    def table(self, node: ast.AST, depth: int) -> TableFn:
        if depth > MAX_DEPTH:
            raise self.fail(node, f"nesting deeper than {MAX_DEPTH}")
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) in AGGREGATE_FUNCTIONS:
            return self._aggregate_call(node, depth)
        if isinstance(node, ast.Name) and node.id not in _CONSTANT_NAMES:
            raise ExpressionError(
                f"`{self.text}` at column {node.col_offset + 1}: field `{node.id}` is read outside "
                f"an aggregate function; in an aggregate expression wrap it, e.g. `max({node.id})` "
                f"or `count({node.id} == 'x')`"
            )
        return self._generic(node, depth, self.table, in_aggregate=True)

    def _aggregate_call(self, node: ast.Call, depth: int) -> TableFn:
        name = node.func.id  # type: ignore[attr-defined]
        if node.keywords:
            raise self.fail(node, f"keyword arguments to `{name}()`")
        if name == "count" and not node.args:
            return len
        if len(node.args) != 1:
            raise self.fail(node, f"`{name}()` with {len(node.args)} arguments (it takes one)")
        self.in_aggregate_argument = True
        try:
            argument = self.row(node.args[0], depth + 1)
        finally:
            self.in_aggregate_argument = False
        if name == "count":
            return lambda rows: _count(rows, argument)
        reducer = AGGREGATE_FUNCTIONS[name]
        return lambda rows: reducer(_values(rows, argument))

    # Shared node kinds -----------------------------------------------------------------------

    def _generic(
        self,
        node: ast.AST,
        depth: int,
        recurse: Callable[[ast.AST, int], Callable[[Any], Any]],
        *,
        in_aggregate: bool,
    ) -> Callable[[Any], Any]:
        d = depth + 1
        if isinstance(node, ast.Constant):
            value = node.value
            if not isinstance(value, str | int | float | bool | type(None)):
                raise self.fail(node, f"constant {value!r}")
            return lambda _: value
        if isinstance(node, ast.Name):
            if node.id in _CONSTANT_NAMES:
                constant = _CONSTANT_NAMES[node.id]
                return lambda _: constant
            return self._field(node.id)
        if isinstance(node, ast.Attribute) and not in_aggregate:
            parent = recurse(node.value, d)
            attr = node.attr
            return lambda row: v.get(attr) if isinstance(v := parent(row), dict) else None
        if isinstance(node, ast.List | ast.Tuple):
            items = [recurse(item, d) for item in node.elts]
            return lambda row: [item(row) for item in items]
        if isinstance(node, ast.BoolOp):
            parts = [recurse(value, d) for value in node.values]
            if isinstance(node.op, ast.And):
                return lambda row: all(bool(part(row)) for part in parts)
            return lambda row: any(bool(part(row)) for part in parts)
        if isinstance(node, ast.UnaryOp):
            operand = recurse(node.operand, d)
            if isinstance(node.op, ast.Not):
                return lambda row: not operand(row)
            if isinstance(node.op, ast.USub):
                return lambda row: None if (v := operand(row)) is None else -v
            if isinstance(node.op, ast.UAdd):
                return operand
            raise self.fail(node, "operator `~`")
        if isinstance(node, ast.BinOp):
            return self._binary(node, recurse(node.left, d), recurse(node.right, d))
        if isinstance(node, ast.Compare):
            return self._compare(node, [recurse(n, d) for n in (node.left, *node.comparators)])
        if isinstance(node, ast.IfExp):
            test, body, orelse = (recurse(n, d) for n in (node.test, node.body, node.orelse))
            return lambda row: body(row) if test(row) else orelse(row)
        if isinstance(node, ast.Call):
            return self._row_call(node, recurse, d, in_aggregate=in_aggregate)
        raise self.fail(node, f"`{self.source(node)}` ({type(node).__name__})")

    def _field(self, name: str) -> RowFn:
        self.fields.add(name)
        return lambda row: row.get(name)

    def _binary(self, node: ast.BinOp, left: RowFn, right: RowFn) -> RowFn:
        entry = _BINARY.get(type(node.op))
        if entry is None:
            # Point at the operator itself, which lies between the two operands.
            start, end = node.left.end_col_offset or 0, node.right.col_offset
            symbol_text = self.text[start:end].strip(" ()")
            position = ast.Constant(value=None, col_offset=self.text.index(symbol_text, start))
            raise self.fail(position, f"operator `{symbol_text}`")
        symbol, fn = entry

        def apply(row: Row) -> Any:
            a, b = left(row), right(row)
            if a is None or b is None:
                return None
            # Repetition of strings or lists (`'a' * 10**9`) is refused: it only allocates memory.
            if symbol == "*" and not (_is_number(a) and _is_number(b)):
                raise TypeError(f"`*` multiplies numbers only, got {a!r} and {b!r}")
            if symbol in {"/", "//", "%"} and b == 0:
                return None
            if symbol == "%" and isinstance(a, str):
                return _check_size(_format(a, b))
            return _check_size(fn(a, b))

        return apply

    def _compare(self, node: ast.Compare, parts: list[RowFn]) -> RowFn:
        checks: list[Callable[[Any, Any], bool]] = []
        for op, right in zip(node.ops, node.comparators, strict=True):
            if isinstance(op, ast.Is | ast.IsNot) and not (
                isinstance(right, ast.Constant)
                and right.value is None
                or isinstance(right, ast.Name)
                and right.id == "null"
            ):
                raise self.fail(node, "`is` with anything but null (use ==)")
            fn = _COMPARE[type(op)]
            ordering = isinstance(op, ast.Lt | ast.LtE | ast.Gt | ast.GtE)
            checks.append(_null_false(fn) if ordering else fn)

        def apply(row: Row) -> bool:
            values = [part(row) for part in parts]
            return all(check(values[i], values[i + 1]) for i, check in enumerate(checks))

        return apply

    def _row_call(
        self,
        node: ast.Call,
        recurse: Callable[[ast.AST, int], Callable[[Any], Any]],
        depth: int,
        *,
        in_aggregate: bool,
    ) -> Callable[[Any], Any]:
        name = node.func.id if isinstance(node.func, ast.Name) else None
        if name is None:
            raise self.fail(node, f"calling `{self.source(node.func)}`")
        if node.keywords:
            raise self.fail(node, f"keyword arguments to `{name}()`")
        if name in AGGREGATE_FUNCTIONS:
            where = (
                "inside another aggregate function"
                if self.in_aggregate_argument
                else "in a row expression"
            )
            raise ExpressionError(
                f"`{self.text}` at column {node.col_offset + 1}: aggregate function `{name}()` "
                f"{where} is not allowed; aggregate functions are used at the top of aggregate "
                "expressions (decide.rules, assert.condition), e.g. `count(label == 'high') > 0`. "
                f"Row functions: {', '.join(sorted(ROW_FUNCTIONS))}"
            )
        if name == "field" and not in_aggregate:
            if (
                len(node.args) != 1
                or not isinstance(node.args[0], ast.Constant)
                or not isinstance(node.args[0].value, str)
            ):
                raise self.fail(node, "`field()` with anything but one string constant")
            return self._field(node.args[0].value)
        entry = ROW_FUNCTIONS.get(name)
        if entry is None:
            raise self.fail(node, f"function `{name}()`")
        fn, least, most = entry
        if not least <= len(node.args) <= most:
            expected = str(least) if least == most else f"{least} to {most}"
            raise self.fail(node, f"`{name}()` with {len(node.args)} arguments (takes {expected})")
        arguments = [recurse(arg, depth) for arg in node.args]
        return lambda row: _check_size(fn(*(argument(row) for argument in arguments)))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float)


def _null_false(fn: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    return lambda a, b: a is not None and b is not None and fn(a, b)


MAX_JMESPATH_LENGTH = 1000  # characters in a JMESPath expression
MAX_JMESPATH_NODES = 300  # nodes of its parsed tree
MAX_JMESPATH_OPERATIONS = 3_000_000  # interpreter steps (and created list items) per search
MAX_JMESPATH_SECONDS = 10.0  # wall clock per search, whatever the step's timeout
MAX_JMESPATH_SIZE = 5_000_000  # values (64 characters of text count as one) a multi-select holds


def _jmespath_tree(select: str) -> jmespath.parser.ParsedResult:
    if len(select) > MAX_JMESPATH_LENGTH:
        raise ExpressionError(
            f"JMESPath expression is {len(select)} characters long; at most "
            f"{MAX_JMESPATH_LENGTH} (MAX_JMESPATH_LENGTH)"
        )
    try:
        parsed = jmespath.compile(select)
    except jmespath.exceptions.JMESPathError as error:
        raise ExpressionError(f"`{select}` is not a valid JMESPath expression: {error}") from None
    except RecursionError:
        raise ExpressionError(
            f"`{select[:80]}` nests too deeply to read as a JMESPath expression"
        ) from None
    nodes, stack = 0, [parsed.parsed]
    while stack:
        node = stack.pop()
        nodes += 1
        if nodes > MAX_JMESPATH_NODES:
            raise ExpressionError(
                f"`{select[:80]}` has more than {MAX_JMESPATH_NODES} parts (MAX_JMESPATH_NODES); "
                "select in smaller steps"
            )
        stack.extend(child for child in node.get("children", ()) if isinstance(child, dict))
    return parsed


def check_jmespath(select: str | None) -> str | None:
    """`select` when it is a valid JMESPath expression (the other declarative language here).

    Raises:
        ExpressionError: invalid, or over MAX_JMESPATH_LENGTH / MAX_JMESPATH_NODES.
    """
    if select is not None:
        _jmespath_tree(select)
    return select


def search_jmespath(select: str, data: Any) -> Any:
    """`jmespath.search(select, data)` within bounds on time, work and size.

    Every interpreter step counts against MAX_JMESPATH_OPERATIONS (a list the search creates
    counts its length), and the search stops after MAX_JMESPATH_SECONDS. A multi-select
    (`{a: x, b: y}`, `[x, y]`) is the one construct that can put one value in several places,
    so `{a:@,b:@}.{a:@,b:@}...` doubles per level without copying anything, until something
    walks or writes it out: each multi-select's written-out size is counted (shared values
    every time) and held to MAX_JMESPATH_SIZE.

    Raises:
        ExpressionError: naming the limit that was reached.
    """
    parsed = _jmespath_tree(select)
    interpreter = _BoundedInterpreter(select)
    try:
        return interpreter.visit(parsed.parsed, data)
    except RecursionError:
        raise ExpressionError(f"`{select[:80]}` nests too deeply to evaluate") from None
    except jmespath.exceptions.JMESPathError as error:
        raise ExpressionError(f"`{select[:80]}` failed: {error}") from None


class _BoundedInterpreter(jmespath.visitor.TreeInterpreter):  # type: ignore[misc]
    def __init__(self, select: str) -> None:
        super().__init__()
        self.select = select
        self.operations = 0
        self.deadline = time.monotonic() + MAX_JMESPATH_SECONDS
        # id -> (written-out size, the container itself, kept alive so its id stays its own)
        self.sizes: dict[int, tuple[int, Any]] = {}

    def visit(self, node: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        self.operations += 1
        if not self.operations & 0x3FF:
            self._charge(0)
        method = self._method_cache.get(node["type"])
        if method is None:
            method = getattr(self, f"visit_{node['type']}", self.default_visit)
            self._method_cache[node["type"]] = method
        result = method(node, *args, **kwargs)
        if result.__class__ is list and not (args and result is args[0]):
            self._charge(len(result))
        return result

    def _charge(self, operations: int) -> None:
        """Count `operations`; check the step limit, and the clock every 1,024 steps or so."""
        before = self.operations
        self.operations += operations
        if self.operations > MAX_JMESPATH_OPERATIONS:
            raise ExpressionError(
                f"`{self.select[:80]}` took more than {MAX_JMESPATH_OPERATIONS} steps "
                "(MAX_JMESPATH_OPERATIONS); select less, or in smaller steps"
            )
        crossed = before >> 10 != self.operations >> 10 or not operations
        if crossed and time.monotonic() > self.deadline:
            raise ExpressionError(
                f"`{self.select[:80]}` ran longer than {MAX_JMESPATH_SECONDS} s "
                "(MAX_JMESPATH_SECONDS); select less, or in smaller steps"
            )

    def visit_multi_select_dict(self, node: dict[str, Any], value: Any) -> Any:
        return self._sized(super().visit_multi_select_dict(node, value))

    def visit_multi_select_list(self, node: dict[str, Any], value: Any) -> Any:
        return self._sized(super().visit_multi_select_list(node, value))

    def _sized(self, collected: Any) -> Any:
        if collected is not None:
            size = self._size(collected)
            if size > MAX_JMESPATH_SIZE:
                raise ExpressionError(
                    f"`{self.select[:80]}` builds a value of {size} items written out, more "
                    f"than {MAX_JMESPATH_SIZE} (MAX_JMESPATH_SIZE); a multi-select that repeats "
                    "its input grows with every level: select less, or in smaller steps"
                )
        return collected

    def _size(self, value: Any) -> int:
        """The written-out size of `value`, every container's size memoised by identity."""
        if not isinstance(value, dict | list):
            return 1 + len(value) // 64 if isinstance(value, str) else 1
        stack: list[tuple[Any, bool]] = [(value, False)]
        while stack:
            item, children_done = stack.pop()
            if id(item) in self.sizes:
                continue
            children = list(item.values()) if isinstance(item, dict) else item
            if children_done:
                size = 1 + sum(
                    self.sizes[id(c)][0] if isinstance(c, dict | list) else self._size(c)
                    for c in children
                )
                self.sizes[id(item)] = (size, item)
                self._charge(len(children))
                continue
            stack.append((item, True))
            stack.extend((c, False) for c in children if isinstance(c, dict | list))
        return self.sizes[id(value)][0]


JMESPathSelect = Annotated[str | None, AfterValidator(check_jmespath)]
"""A config field holding an optional JMESPath expression, checked when the config is built."""

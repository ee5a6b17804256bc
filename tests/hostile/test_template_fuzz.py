"""Fuzzing the template loader: whatever the file holds, `load_template` returns a Frame or
raises a `TemplateError` with located problems, never another exception and never a hang.

Inputs: random text and bytes, random YAML documents built from the template's own field
names, every field of the valid templates replaced by a value of the wrong type, and random
mutations of the valid templates' text; plus the classic parser attacks (alias bombs, recursive
anchors, deep nesting, huge scalars and files), each refused with an error naming its limit.
Run more cases with `MARIGOLD_FUZZ_EXAMPLES=50000 .venv/bin/pytest tests/hostile -q`.
"""

from __future__ import annotations

import copy
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marigold_dagster.errors import TemplateError
from marigold_dagster.template.frame import Frame
from marigold_dagster.template.loader import load_template
from marigold_dagster.template.yaml_source import (
    MAX_ALIASES,
    MAX_DEPTH,
    MAX_NODES,
    MAX_TEMPLATE_BYTES,
)
from tests.fuzz_budget import fuzz_examples

ROOT = Path(__file__).resolve().parents[2]
VALID_FILES = sorted(
    [
        *(ROOT / "templates").glob("*.yaml"),
        *(ROOT / "tests/fixtures/templates/valid").glob("*.yaml"),
    ]
)
VALID_TEXTS = {path.stem: path.read_text("utf-8") for path in VALID_FILES}

# File-level problems have no line to point at; every other problem must have one.
FILE_LEVEL = {"UNREADABLE", "OVER_LIMIT"}

FUZZ = {
    "deadline": timedelta(seconds=10),  # a generous bound that still catches a hang
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    "derandomize": False,
}


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz_templates")


def check_load(path: Path, catalog: Any) -> Frame | TemplateError:
    """Load `path`; fail the test unless the outcome is a Frame or a well-formed TemplateError."""
    try:
        return load_template(path, catalog)
    except TemplateError as error:
        assert error.findings, "a TemplateError must carry at least one problem"
        for problem in error.findings:
            assert problem.code and problem.code == problem.code.upper(), problem
            assert problem.message.strip(), problem
            assert problem.line is None or problem.line >= 1, problem
        assert any(p.line is not None or p.code in FILE_LEVEL for p in error.findings), (
            f"no problem is located by line:\n{error}"
        )
        assert str(path) in str(error)
        return error


def load_text(directory: Path, text: str | bytes, catalog: Any, stem: str = "fuzzed") -> Any:
    path = directory / f"{stem}.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_bytes(text.encode("utf-8", errors="surrogatepass"))
    return check_load(path, catalog)


# ------------------------------------------------------------------ strategies

FIELD_NAMES = [
    "name", "version", "description", "inputs", "models", "allowed_hosts", "budget", "tags",
    "steps", "kind", "depends_on", "uses", "compose", "with", "branches", "batch", "planning",
    "gate", "retry", "timeout_s", "pool", "max_steps", "max_tokens", "max_cost_usd",
    "max_fanout", "max_planning_phases", "size", "failure_strategy", "goal", "allow",
    "max_depth", "max_phases", "max_attempts", "sees", "schema_tier", "use", "prompt",
    "default", "input", "n", "choose", "bad_ids", "<<",
]  # fmt: skip
WORDS = [
    "task", "decision", "converge", "batch", "planning", "gate", "t.mark", "t.rows",
    "t.route", "llm.generate", "acquire.read_table", "decide.rules", "only", "load", "a b",
    "", "-1", "0", "1e999", "null", "~", "yes", "2024-13-45", "../../etc/passwd",
]  # fmt: skip

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(WORDS),
    st.text(max_size=30),
)
keys = st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=12), st.integers(-5, 5))
yaml_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)),
    max_leaves=12,
)


def paths_of(data: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a value inside `data` (mapping keys and list indexes)."""
    found = [prefix] if prefix else []
    if isinstance(data, dict):
        for key, value in data.items():
            found += paths_of(value, (*prefix, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found += paths_of(value, (*prefix, index))
    return found


VALID_DATA = {stem: yaml.safe_load(text) for stem, text in VALID_TEXTS.items()}
VALID_PATHS = [(stem, path) for stem, data in VALID_DATA.items() for path in paths_of(data)]


@st.composite
def wrong_typed_templates(draw: st.DrawFn) -> tuple[str, str]:
    """A valid template with one to three fields replaced by random values of any type."""
    stem = draw(st.sampled_from(sorted(VALID_DATA)))
    data = copy.deepcopy(VALID_DATA[stem])
    candidates = [path for s, path in VALID_PATHS if s == stem]
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(candidates))
        parent = data
        try:
            for part in path[:-1]:
                parent = parent[part]
            if draw(st.booleans()) or not isinstance(parent, dict):
                parent[path[-1]] = draw(yaml_values)
            else:
                parent.pop(path[-1], None)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier replacement removed this path
    return stem, dump(data)


@st.composite
def mutated_texts(draw: st.DrawFn) -> tuple[str, str]:
    """A valid template's text with a few random line and character edits."""
    stem = draw(st.sampled_from(sorted(VALID_TEXTS)))
    lines = VALID_TEXTS[stem].splitlines(keepends=True)
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            lines = [""]
        at = draw(st.integers(0, len(lines) - 1))
        edit = draw(
            st.sampled_from(["delete", "duplicate", "swap", "indent", "dedent", "insert", "chars"])
        )
        if edit == "delete":
            del lines[at]
        elif edit == "duplicate":
            lines.insert(at, lines[at])
        elif edit == "swap":
            other = draw(st.integers(0, len(lines) - 1))
            lines[at], lines[other] = lines[other], lines[at]
        elif edit == "indent":
            lines[at] = "  " + lines[at]
        elif edit == "dedent":
            lines[at] = lines[at][2:] if lines[at].startswith("  ") else lines[at].lstrip()
        elif edit == "insert":
            lines.insert(at, draw(st.sampled_from(YAML_SNIPPETS)))
        else:
            line = lines[at]
            cut = draw(st.integers(0, len(line)))
            noise = draw(st.text(alphabet=YAML_CHARS, max_size=6))
            lines[at] = line[:cut] + noise + line[cut + draw(st.integers(0, 3)) :]
    return stem, "".join(lines)


YAML_CHARS = st.sampled_from(list(":-[]{}&*!|>'\"#%@`,? \t\n0aZ_.~"))
YAML_SNIPPETS = [
    "  - {name: extra, uses: t.mark}\n",
    "steps: []\n",
    "  - &anchor {name: a, uses: t.mark}\n",
    "  - *anchor\n",
    "  - *missing\n",
    "x: !!python/object/apply:os.system [echo pwned]\n",
    "x: !!binary aGVsbG8=\n",
    "x: 2024-02-30\n",
    "x: !!timestamp not-a-date\n",
    "x: !!int twelve\n",
    "version: 99999999999999999999999999999\n",
    "budget: {max_steps: -1, max_tokens: 0, max_cost_usd: .nan, max_fanout: .inf}\n",
    "<<: {name: merged}\n",
    "---\n",
    "%YAML 1.1\n",
    "? [a, b]\n: c\n",
    "name: \u202eevil\u0000\n",
]


DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def dump(data: Any) -> str:
    return yaml.dump(data, Dumper=DUMPER, allow_unicode=True, sort_keys=False)


def _examples(n: int) -> Any:
    return settings(max_examples=fuzz_examples(n), **FUZZ)


# ------------------------------------------------------------------ fuzz tests


@_examples(700)
@given(text=st.text(max_size=400))
def test_random_text(fuzz_dir: Path, catalog: Any, text: str) -> None:
    load_text(fuzz_dir, text, catalog)


@_examples(300)
@given(data=st.binary(max_size=400))
def test_random_bytes(fuzz_dir: Path, catalog: Any, data: bytes) -> None:
    load_text(fuzz_dir, data, catalog)


@_examples(400)
@given(text=st.text(alphabet=YAML_CHARS, max_size=200))
def test_random_yaml_punctuation(fuzz_dir: Path, catalog: Any, text: str) -> None:
    load_text(fuzz_dir, text, catalog)


@_examples(400)
@given(data=st.one_of(yaml_values, st.dictionaries(keys, yaml_values, max_size=6)))
def test_random_yaml_documents(fuzz_dir: Path, catalog: Any, data: Any) -> None:
    load_text(fuzz_dir, dump(data), catalog)


@_examples(600)
@given(case=wrong_typed_templates())
def test_wrong_types_in_valid_templates(fuzz_dir: Path, catalog: Any, case: Any) -> None:
    stem, text = case
    load_text(fuzz_dir, text, catalog, stem=stem)


@_examples(600)
@given(case=mutated_texts())
def test_mutations_of_valid_templates(fuzz_dir: Path, catalog: Any, case: Any) -> None:
    stem, text = case
    load_text(fuzz_dir, text, catalog, stem=stem)


def test_every_valid_template_still_loads(fuzz_dir: Path, catalog: Any) -> None:
    for stem, text in VALID_TEXTS.items():
        assert isinstance(load_text(fuzz_dir, text, catalog, stem=stem), Frame), stem


# ------------------------------------------------------------------ parser attacks


def refused(directory: Path, text: str, catalog: Any, limit_name: str) -> TemplateError:
    started = time.monotonic()
    outcome = load_text(directory, text, catalog)
    assert time.monotonic() - started < 10, "a refusal must be quick"
    assert isinstance(outcome, TemplateError), "this file must be refused"
    assert limit_name in str(outcome), str(outcome)
    return outcome


def test_billion_laughs_is_refused_before_expansion(fuzz_dir: Path, catalog: Any) -> None:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for level in range(1, 10):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 9) + "]")
    error = refused(fuzz_dir, "\n".join(lines) + "\n", catalog, "MAX_NODES")
    assert f"more than {MAX_NODES:,} values" in str(error)
    assert error.findings[0].code == "OVER_LIMIT" and error.findings[0].line is not None


def test_too_many_aliases_are_refused(fuzz_dir: Path, catalog: Any) -> None:
    text = "a: &a x\nb: [" + ", ".join(["*a"] * (MAX_ALIASES + 1)) + "]\n"
    refused(fuzz_dir, text, catalog, "MAX_ALIASES")


def test_a_recursive_anchor_is_refused(fuzz_dir: Path, catalog: Any) -> None:
    error = refused(fuzz_dir, "steps: &s [name: x, *s]\n", catalog, "recursive alias")
    assert error.findings[0].line == 1


@pytest.mark.parametrize(
    "text",
    [
        "[" * 100_000 + "]" * 100_000,
        "a: " + "{a: " * 10_000 + "1" + "}" * 10_000,
        "".join(f"{'  ' * i}k{i}:\n" for i in range(300)) + "  " * 300 + "x\n",
        "steps:\n" + "".join(f"{'  ' * i}-\n" for i in range(1, 300)) + "  " * 300 + "- x\n",
    ],
    ids=["flow-sequences", "flow-mappings", "block-mappings", "block-sequences"],
)
def test_deep_nesting_is_refused(fuzz_dir: Path, catalog: Any, text: str) -> None:
    refused(fuzz_dir, text, catalog, f"deeper than {MAX_DEPTH} levels (MAX_DEPTH)")


def test_nesting_within_the_limit_is_a_normal_error(fuzz_dir: Path, catalog: Any) -> None:
    depth = MAX_DEPTH - 2
    text = "name: fuzzed\ntags: " + "[" * depth + "]" * depth + "\n"
    outcome = load_text(fuzz_dir, text, catalog)
    assert isinstance(outcome, TemplateError) and "MAX_DEPTH" not in str(outcome)


def test_a_file_over_the_size_cap_is_refused_unread(fuzz_dir: Path, catalog: Any) -> None:
    text = "name: fuzzed\ndescription: " + "x" * MAX_TEMPLATE_BYTES + "\n"
    error = refused(fuzz_dir, text, catalog, f"over the limit of {MAX_TEMPLATE_BYTES:,} bytes")
    assert "MAX_TEMPLATE_BYTES" in str(error)
    assert error.findings[0].code == "OVER_LIMIT"


def test_a_huge_scalar_under_the_cap_is_a_normal_error(fuzz_dir: Path, catalog: Any) -> None:
    text = "name: " + "n" * (MAX_TEMPLATE_BYTES - 100) + "\n"
    outcome = load_text(fuzz_dir, text, catalog)
    assert isinstance(outcome, TemplateError)
    assert "OVER_LIMIT" not in str(outcome) and len(str(outcome)) < MAX_TEMPLATE_BYTES


@pytest.mark.parametrize(
    "text, line",
    [
        ("name: x\nwhen: 2024-13-45\n", 2),
        ("name: x\nversion: !!int twelve\n", 2),
        ("name: x\n\nwhen: !!timestamp soon\n", 3),
        ("name: x\nbad: \x00\n", 2),
    ],
    ids=["impossible-date", "bad-int-tag", "bad-timestamp-tag", "nul-character"],
)
def test_unreadable_values_are_located_yaml_errors(
    fuzz_dir: Path, catalog: Any, text: str, line: int
) -> None:
    outcome = load_text(fuzz_dir, text, catalog)
    assert isinstance(outcome, TemplateError)
    assert [(p.code, p.line) for p in outcome.findings] == [("YAML_SYNTAX", line)]


def test_invalid_utf8_is_located(fuzz_dir: Path, catalog: Any) -> None:
    outcome = load_text(fuzz_dir, b"name: x\nversion: 1\ndescription: \xff\xfe\n", catalog)
    assert isinstance(outcome, TemplateError)
    assert [(p.code, p.line) for p in outcome.findings] == [("YAML_SYNTAX", 3)]
    assert "not UTF-8" in str(outcome)

"""The loader: valid templates load; each invalid one fails with file:line, field and a hint.

Each file in tests/fixtures/templates/invalid/ starts with a comment saying what it expects:
`# expect: CODE at LINE [FIELD] "text the message must contain"`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from marigold_dagster.errors import TemplateError, TemplatesInvalid
from marigold_dagster.template.loader import load_template, load_templates

FIXTURES = Path(__file__).parents[2] / "fixtures" / "templates"
INVALID = sorted((FIXTURES / "invalid").glob("*.yaml"))
VALID = sorted((FIXTURES / "valid").glob("*.yaml"))
EXPECT = re.compile(
    r'^# expect: (?P<code>\w+) at (?P<line>\d+)(?: (?P<field>\S+))? "(?P<text>.*)"$'
)


def expectation(path: Path) -> re.Match[str]:
    match = EXPECT.match(path.read_text().splitlines()[0])
    assert match, f"{path.name} must start with an `# expect:` line"
    return match


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_template_names_file_line_field_and_what_is_valid(path: Path, catalog):
    expected = expectation(path)
    with pytest.raises(TemplateError) as raised:
        load_template(path, catalog)
    rendered = str(raised.value)
    problems = {(p.code, p.line, p.field) for p in raised.value.findings}
    field = expected["field"] or ""
    assert (expected["code"], int(expected["line"]), field) in problems, rendered
    location = f"{path}:{expected['line']}:{' ' + field + ':' if field else ''}"
    matching = [line for line in rendered.splitlines() if line.strip().startswith(location)]
    assert matching, f"no line starts with {location!r} in:\n{rendered}"
    assert any(expected["text"] in line for line in matching), rendered


def test_every_problem_is_reported_not_just_the_first(tmp_path: Path, catalog):
    path = tmp_path / "several.yaml"
    path.write_text(
        "name: several\nversion: 0\nbudget: {max_steps: 1, max_tokens: 1, max_cost_usd: 1}\n"
        "steps:\n  - {name: a-b, uses: t.mark}\n"
    )
    with pytest.raises(TemplateError) as raised:
        load_template(path, catalog)
    codes = sorted(p.code for p in raised.value.findings)
    assert codes == ["INVALID_NAME", "MISSING_FIELD", "NOT_POSITIVE"]


@pytest.mark.parametrize("path", VALID, ids=[p.stem for p in VALID])
def test_valid_fixture_templates_load(path: Path, catalog):
    frame = load_template(path, catalog)
    assert frame.name == path.stem
    assert list(frame.steps), "a loaded frame has its steps in dependency order"


def test_load_templates_reports_every_bad_file(tmp_path: Path, catalog):
    for name in ("cycle", "duplicate_name"):
        (tmp_path / f"{name}.yaml").write_text((FIXTURES / "invalid" / f"{name}.yaml").read_text())
    (tmp_path / "notes.txt").write_text("not a template")
    with pytest.raises(TemplatesInvalid) as raised:
        load_templates(tmp_path, catalog)
    assert [error.path.stem for error in raised.value.errors] == ["cycle", "duplicate_name"]


def test_topological_order_follows_dependencies(catalog, tmp_path: Path):
    path = tmp_path / "order.yaml"
    path.write_text(
        "name: order\nversion: 1\n"
        "budget: {max_steps: 9, max_tokens: 1, max_cost_usd: 1, max_fanout: 1}\nsteps:\n"
        "  - {name: c, uses: t.mark, depends_on: [b]}\n"
        "  - {name: b, uses: t.mark, depends_on: [a]}\n"
        "  - {name: a, uses: t.mark}\n"
    )
    assert list(load_template(path, catalog).steps) == ["a", "b", "c"]

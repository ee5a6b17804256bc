"""Template YAML that would crash or mislead the loader is a clean, located template error.

A few kilobytes of chained aliases, each nesting the previous one ten levels deeper, used to
raise RecursionError and take the whole code location down; a key written twice in a mapping
used to keep its last value silently (a second `allowed_hosts:` replaced the first).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from marigold_dagster.errors import TemplateError, TemplatesInvalid
from marigold_dagster.template.loader import load_template, load_templates

GOOD = """\
name: good
version: 1
budget: {max_steps: 5, max_tokens: 100, max_cost_usd: 1, max_fanout: 2}
steps:
  - {name: s, uses: t.rows, with: {n: 3}}
"""


def alias_chain(links: int = 120, nesting: int = 10) -> str:
    lines = ["name: chain", "version: 1", "x:", "  - &a0 [x]"]
    lines += [f"  - &a{i} {'[' * nesting}*a{i - 1}{']' * nesting}" for i in range(1, links)]
    return "\n".join(lines) + "\n"


def test_a_chain_of_aliases_nesting_deeper_each_time_is_a_limit_error(
    tmp_path: Path, catalog: Any
) -> None:
    text = alias_chain()
    assert len(text.encode()) < 4_200
    (tmp_path / "chain.yaml").write_text(text)
    (tmp_path / "good.yaml").write_text(GOOD)
    with pytest.raises(TemplateError) as refused:
        load_template(tmp_path / "chain.yaml", catalog)
    problem = refused.value.findings[0]
    assert problem.code == "OVER_LIMIT" and "once its aliases are expanded" in problem.message
    with pytest.raises(TemplatesInvalid) as folder:
        load_templates(tmp_path, catalog)
    assert "chain.yaml" in str(folder.value) and "good.yaml" not in str(folder.value)


def test_a_key_written_twice_is_refused_with_both_lines(tmp_path: Path, catalog: Any) -> None:
    path = tmp_path / "twice.yaml"
    path.write_text(GOOD + "allowed_hosts: [api.example.com]\nallowed_hosts: [evil.example]\n")
    with pytest.raises(TemplateError) as refused:
        load_template(path, catalog)
    problem = refused.value.findings[0]
    assert problem.line == 7
    assert "key `allowed_hosts` appears twice in one mapping (first on line 6)" in problem.message


def test_a_merge_key_may_still_be_overridden(tmp_path: Path, catalog: Any) -> None:
    path = tmp_path / "good.yaml"
    path.write_text(
        GOOD.replace(
            "budget: {max_steps: 5, max_tokens: 100, max_cost_usd: 1, max_fanout: 2}",
            "budget:\n  <<: {max_steps: 9, max_tokens: 100, max_cost_usd: 1, max_fanout: 2}\n"
            "  max_steps: 5",
        )
    )
    assert load_template(path, catalog).template.budget.max_steps == 5

"""A huge planner answer costs validation time and prompt space in proportion to its size.

A fragment of thousands of steps, each with a dangling reference, used to take quadratic time
(each step's position looked up by a scan, every finding listing every id) and to copy every
finding, each naming every id, into the retry prompt. Findings are now bounded in number and in
size, and the prompt lists at most MAX_PROMPT_FINDINGS of them. The timing ratio lives in
`bench/bench_fragment_validation.py`; these tests check sizes, which do not depend on the
machine.
"""

from __future__ import annotations

from grammar_ops import Finding
from harness.scripted_planner import dangling_chain
from marigold_dagster.planning.prompt import MAX_PROMPT_FINDINGS, prompt_variable
from marigold_dagster.planning.validation import MAX_FINDINGS, validate_fragment
from tests.support.planning_scope import make_scope


def test_findings_are_bounded_in_number_and_size() -> None:
    scope = make_scope(max_steps=10_000, max_depth=10_000, max_fanout=10_000)
    verdict = validate_fragment(dangling_chain(3_000, "t.mark"), scope)
    assert not verdict.accepted
    assert len(verdict.findings) == MAX_FINDINGS
    assert verdict.findings[-1].code == "TOO_MANY_FINDINGS"
    assert "more problems are not listed" in verdict.findings[-1].message
    assert max(len(str(finding)) for finding in verdict.findings) < 600
    dangling = verdict.findings[0]
    assert dangling.code == "DANGLING_REFERENCE" and " more" in dangling.message


def test_the_retry_prompt_lists_a_bounded_number_of_findings() -> None:
    findings = [Finding("DANGLING_REFERENCE", ("steps", i), f"problem {i}") for i in range(500)]
    text = prompt_variable("## Results available\n(none)", None, [findings])
    listed = [line for line in text.splitlines() if line.startswith("- ")]
    assert len(listed) == MAX_PROMPT_FINDINGS + 1
    assert listed[-1] == f"- ... and {500 - MAX_PROMPT_FINDINGS} more problems"

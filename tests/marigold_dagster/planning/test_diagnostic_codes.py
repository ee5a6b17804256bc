"""The README and the code agree on the planner's diagnostic codes."""

from __future__ import annotations

import re
from pathlib import Path

import grammar_ops.composition
import marigold_dagster.planning.planner
import marigold_dagster.planning.validation

ROOT = Path(__file__).parents[3]
SOURCES = [grammar_ops.composition, marigold_dagster.planning.validation]


def emitted_codes() -> set[str]:
    codes = set()
    for module in [*SOURCES, marigold_dagster.planning.planner]:
        text = Path(str(module.__file__)).read_text()
        codes |= set(re.findall(r'Finding\(\s*"([A-Z][A-Z_]+)"', text))
        codes |= set(re.findall(r'^\s+"([A-Z][A-Z_]{3,})",$', text, re.MULTILINE))
        codes |= set(re.findall(r'"([A-Z][A-Z_]{3,})" if ', text))
        codes |= set(re.findall(r"else \"([A-Z][A-Z_]{3,})\"", text))
    return codes


def test_every_code_a_plan_can_be_rejected_with_has_a_sentence_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    codes = emitted_codes()
    assert {"NOT_ALLOWED", "UNKNOWN_CAPABILITY", "TOO_MANY_CHILDREN", "MODEL_ERROR"} <= codes
    table = readme[readme.index("| code | the plan ... |") :]
    rows = [line.strip() for line in table.splitlines() if line.strip().startswith("| `")]
    documented = {code for row in rows for code in re.findall(r"`([A-Z_]+)`", row.split("|")[1])}
    assert codes - documented == set(), "codes the README does not explain"
    assert documented - codes == set(), "codes the README names but the code never records"

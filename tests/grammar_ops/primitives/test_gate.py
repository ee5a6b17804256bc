"""gate.approval: a contract only; running it inline fails clearly."""

from __future__ import annotations

import pytest

from grammar_ops import CompositionError, Kind, PrimitiveError, standard_catalog

CONFIG = {"prompt": "Send?", "approvers": ["legal"], "timeout_s": 3600}


def test_gate_contract():
    composition = standard_catalog().resolve("gate.approval", CONFIG)
    assert composition.output_kind(Kind.TABLE) is Kind.TABLE
    assert not composition.side_effect


def test_gate_config_errors():
    with pytest.raises(CompositionError, match="approvers"):
        standard_catalog().resolve("gate.approval", {**CONFIG, "approvers": []})
    with pytest.raises(CompositionError, match="timeout_s"):
        standard_catalog().resolve("gate.approval", {**CONFIG, "timeout_s": 0})


def test_gate_does_not_run_inline(make_ctx):
    composition = standard_catalog().resolve("gate.approval", CONFIG)
    with pytest.raises(PrimitiveError, match="executed by the platform's gate step"):
        composition.run([{"a": 1}], make_ctx())

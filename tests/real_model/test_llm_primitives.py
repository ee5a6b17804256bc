"""`llm.classify` and `llm.extract` in templates, answered by a real model over HTTP."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pyarrow.parquet as pq
import pytest
from dagster import DagsterInstance

from grammar_ops.model import ModelCall, ModelReply
from resources.llama_server import LlamaServer
from resources.model_errors import ModelAnswerError
from resources.sglang import SGLangResource
from tests.real_model.conftest import run_real_template, step_outputs, write_contracts
from tests.support.template_run import TemplateRun

pytestmark = [pytest.mark.real_model, pytest.mark.slow]

LABELS = ["low", "medium", "high"]
TERMS = {
    "type": "object",
    "properties": {
        "counterparty": {"type": "string", "maxLength": 40},
        "liability": {"type": "string", "enum": ["capped", "uncapped", "unlimited", "none"]},
    },
    "required": ["counterparty", "liability"],
    "additionalProperties": False,
}

TRIAGE = """name: real_triage
version: 1
inputs: {contracts: {kind: table, default: contracts.csv}}
models: {worker: worker_model}
budget: {max_steps: 10, max_tokens: 100000, max_cost_usd: 1, max_fanout: 4}
steps:
  - {name: load, uses: acquire.read_table, with: {input: contracts}}
  - name: triage
    kind: batch
    depends_on: [load]
    batch: {size: 10, failure_strategy: isolate}
    uses: llm.classify
    with:
      field: text
      labels: [low, medium, high]
      instructions: high means unlimited liability or uncapped indemnity.
      output_field: risk
      max_tokens: 8
"""

EXTRACT = """name: real_extract
version: 1
inputs: {contracts: {kind: table, default: contracts.csv}}
models: {worker: worker_model}
budget: {max_steps: 10, max_tokens: 100000, max_cost_usd: 1, max_fanout: 4}
steps:
  - {name: load, uses: acquire.read_table, with: {input: contracts}}
  - name: terms
    kind: batch
    depends_on: [load]
    batch: {size: 4, failure_strategy: isolate}
    uses: llm.extract
    with:
      field: text
      schema:
        type: object
        properties:
          counterparty: {type: string, maxLength: 40}
          liability: {type: string, enum: [capped, uncapped, unlimited, none]}
        required: [counterparty, liability]
        additionalProperties: false
      prefix: x_
      max_tokens: 48
"""


def dead_letters(run: TemplateRun, step: str) -> list[dict]:
    """The dead-letter rows the batch step wrote (none when every row was processed)."""
    path = step_outputs(run, f"{step}__merge").get("marigold/dead_letters_path")
    return pq.read_table(path).to_pylist() if path else []


def test_classify_labels_twenty_rows_through_a_template(
    llama_server: LlamaServer, instance: DagsterInstance, tmp_path: Path
) -> None:
    write_contracts(tmp_path, 20)
    run = run_real_template(llama_server, tmp_path, "real_triage", TRIAGE, instance)
    assert run.result.success, run.summary.render()
    rows = run.rows("triage__merge")
    letters = dead_letters(run, "triage")
    assert len(rows) + len(letters) == 20, "every row is labelled or dead-lettered"
    for row in rows:
        jsonschema.validate(row["risk"], {"enum": LABELS})
    for letter in letters:
        assert letter["_dead_letter_error"], "a rejected row says why"
    usage = [step_outputs(run, f"triage[rows_{a}_{a + 9}]") for a in (0, 10)]
    assert all(u["llm.prompt_tokens"] > 0 and u["llm.requests"] == 10 for u in usage)
    assert sum(u["llm.cached_tokens"] for u in usage) > 0, "the shared prefix hit the cache"


def test_extract_answers_are_schema_valid_or_dead_lettered_with_a_reason(
    llama_server: LlamaServer, instance: DagsterInstance, tmp_path: Path
) -> None:
    write_contracts(tmp_path, 4)
    run = run_real_template(llama_server, tmp_path, "real_extract", EXTRACT, instance)
    assert run.result.success, run.summary.render()
    rows = run.rows("terms__merge")
    letters = dead_letters(run, "terms")
    assert len(rows) + len(letters) == 4
    for row in rows:
        answer = {k[2:]: v for k, v in row.items() if k.startswith("x_") and v is not None}
        jsonschema.validate(answer, TERMS)
    for letter in letters:
        assert letter["_dead_letter_error"]


def test_every_answer_is_valid_or_a_diagnosed_error_with_its_tokens(
    real_model: SGLangResource,
) -> None:
    texts = [
        "Master services agreement with Fjord Shipping. Liability is capped at the fees paid.",
        "Supply agreement with Cobalt Systems. The Customer gives an uncapped indemnity.",
    ]
    calls = [
        ModelCall(
            purpose="extract",
            prompt=f"Extract counterparty and liability as JSON.\n\nText:\n{text}",
            max_new_tokens=max_tokens,
            json_schema=TERMS,
        )
        for text in texts
        for max_tokens in (48, 3)  # 3 tokens cannot hold the object: a rejected answer
    ]
    with real_model.usage.step("extract") as meter:
        results = real_model.complete_many(calls)
    rejected = [r for r in results if not isinstance(r, ModelReply)]
    for result in results:
        if isinstance(result, ModelReply):
            jsonschema.validate(result.value, TERMS)
            assert result.prompt_tokens > 0 and result.completion_tokens > 0
        else:
            assert isinstance(result, ModelAnswerError), result
            assert "cut off" in str(result) or "schema" in str(result) or "JSON" in str(result)
            assert result.prompt_tokens > 0 and result.completion_tokens > 0
    assert len(rejected) >= 2, "the 3-token calls are cut off"
    assert meter.requests == 4 and meter.failures == len(rejected)
    assert meter.prompt_tokens == sum(r.prompt_tokens for r in results)  # type: ignore[union-attr]

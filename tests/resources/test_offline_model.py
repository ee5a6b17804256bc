"""OfflineModel: deterministic rules behind the ModelClient interface, with no model server."""

from __future__ import annotations

import logging

import dagster as dg
import jsonschema
import pytest
from pydantic import ValidationError

from grammar_ops.model import ModelCall, ModelClient, ModelError, ModelReply
from resources.offline_model import OfflineModel, leading_sentences

LABELS = ("low", "medium", "high")
DESCRIPTIONS = {
    "low": "standard terms, capped liability, routine renewal",
    "medium": "unusual payment terms or short notice periods",
    "high": "unlimited liability, indemnity, penalties or exclusivity",
}


def classify(subject: str, **extra: object) -> ModelCall:
    return ModelCall(
        purpose="classify",
        prompt=f"Classify: {subject}",
        max_new_tokens=4,
        choices=LABELS,
        subject=subject,
        **extra,  # type: ignore[arg-type]
    )


def test_it_is_a_model_client() -> None:
    assert isinstance(OfflineModel(), ModelClient)
    assert OfflineModel().model_name == "offline-rules"


def test_classify_scores_choice_names_and_descriptions() -> None:
    model = OfflineModel()
    subject = "Supplier accepts unlimited liability and a broad indemnity."
    assert model.complete(classify(subject, choice_descriptions=DESCRIPTIONS)).value == "high"
    routine = "Routine renewal on standard terms."
    assert model.complete(classify(routine, choice_descriptions=DESCRIPTIONS)).value == "low"


def test_ties_go_to_the_first_choice() -> None:
    assert OfflineModel().complete(classify("nothing relevant here")).value == "low"


def test_configured_keywords_count_for_their_label() -> None:
    model = OfflineModel(keywords={"medium": ["net 90", "late fee"]})
    assert model.complete(classify("Payment is net 90 with a late fee.")).value == "medium"


def test_decide_reads_the_subject_not_the_prompt() -> None:
    descriptions = {"deep_review": "check risky contracts in depth"}
    call = ModelCall(purpose="decide", prompt="deep_review or summary?", max_new_tokens=4,
                     choices=("summary", "deep_review"), subject="needs a deep review",
                     choice_descriptions=descriptions)  # fmt: skip
    assert OfflineModel().complete(call).value == "deep_review"


SCHEMA = {
    "type": "object",
    "properties": {
        "email": {"type": "string", "format": "email"},
        "signed_on": {"type": "string", "format": "date"},
        "total_amount": {"type": "number"},
        "party": {"type": "string"},
        "pages": {"type": "integer"},
        "risk": {"enum": ["low", "high"]},
        "renewal": {"type": "boolean"},
        "contacts": {"type": "array", "items": {"type": "string", "format": "email"}},
        "notes": {"type": "string"},
    },
    "required": ["email", "signed_on", "total_amount", "party", "pages", "risk", "notes"],
    "additionalProperties": False,
}
TEXT = """Party: ACME Industrial Ltd
Signed on March 5, 2024 by legal@acme.example, copy to ops@acme.example.
The total amount is $12,500.00 over 14 pages.
Renewal: yes
This is a high risk agreement."""


def test_extract_finds_values_by_pattern_and_stays_schema_valid() -> None:
    call = ModelCall(purpose="extract", prompt="Extract.", max_new_tokens=200,
                     json_schema=SCHEMA, subject=TEXT)  # fmt: skip
    value = OfflineModel().complete(call).value
    jsonschema.validate(value, SCHEMA)
    assert value["email"] == "legal@acme.example"
    assert value["signed_on"] == "2024-03-05"
    assert value["total_amount"] == 12500.0
    assert value["party"] == "ACME Industrial Ltd"
    assert value["pages"] == 14
    assert value["risk"] == "high"
    assert value["renewal"] is True
    assert value["contacts"] == ["legal@acme.example", "ops@acme.example"]


def test_extract_fills_what_it_cannot_find_with_valid_values() -> None:
    call = ModelCall(purpose="extract", prompt="x", max_new_tokens=50, json_schema=SCHEMA,
                     subject="nothing useful")  # fmt: skip
    jsonschema.validate(OfflineModel().complete(call).value, SCHEMA)


def test_generate_and_summarise_take_leading_sentences() -> None:
    text = "First sentence here. Second one follows! Third is long and will not fit at all."
    call = ModelCall(purpose="summarise", prompt="Summarise", max_new_tokens=8, subject=text)
    reply = OfflineModel().complete(call)
    assert reply.text == "First sentence here. Second one follows!"
    assert reply.finish_reason == "stop" and reply.cost_usd == 0
    assert leading_sentences("one two three four", 2) == ("one two", True)


PLAN_SCHEMA = {
    "type": "object",
    "properties": {
        "reasoning": {"type": "string"},
        "steps": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "id": {"type": "string", "pattern": "^[A-Za-z0-9_]+$"},
                    "uses": {"enum": ["extract_clauses", "lookup_counterparty", "llm.extract"]},
                    "with": {"type": "object"},
                    "depends_on": {"type": "array", "items": {"type": "string"}},
                    "reason": {"type": "string"},
                },
                "required": ["id", "uses", "with", "depends_on", "reason"],
            },
        },
        "done": {"type": "boolean"},
    },
    "required": ["reasoning", "steps", "done"],
}
CAPABILITIES = {
    "extract_clauses": "pull liability and termination clauses out of a contract",
    "lookup_counterparty": "look up a counterparty in the supplier registry",
    "llm.extract": "extract fields from free text",
}


def test_plan_picks_capabilities_by_goal_words_and_chains_them_in_goal_order() -> None:
    call = ModelCall(purpose="plan", prompt="Plan.", max_new_tokens=400, json_schema=PLAN_SCHEMA,
                     subject="Check liability clauses and the counterparty of each contract.",
                     choice_descriptions=CAPABILITIES)  # fmt: skip
    fragment = OfflineModel(plan_max_steps=2).complete(call).value
    jsonschema.validate(fragment, PLAN_SCHEMA)
    first, second = fragment["steps"]
    assert [first["uses"], second["uses"]] == ["extract_clauses", "lookup_counterparty"]
    assert fragment["done"] is False
    assert first["depends_on"] == [] and second["depends_on"] == [first["id"]]
    assert first["with"] == {} and second["with"] == {}


def test_plan_chain_follows_the_goal_not_the_ranking() -> None:
    goal = "Look up each counterparty, then check the liability clauses of the contract."
    fragment = OfflineModel(plan_max_steps=2).plan(goal, CAPABILITIES)
    assert [s["uses"] for s in fragment["steps"]] == ["lookup_counterparty", "extract_clauses"]


def test_plan_max_steps_below_one_fails_when_the_resource_is_built() -> None:
    with pytest.raises(ValidationError, match=r"plan_max_steps\n.*greater than or equal to 1"):
        OfflineModel(plan_max_steps=0)


def test_plan_with_nothing_matching_is_done() -> None:
    fragment = OfflineModel().plan("bake bread", CAPABILITIES)
    assert fragment["steps"] == [] and fragment["done"] is True


def test_constraints_rules_cannot_meet_fail_in_place() -> None:
    calls = [
        ModelCall(purpose="generate", prompt="x", max_new_tokens=4, ebnf='root ::= "a"'),
        ModelCall(purpose="generate", prompt="x", max_new_tokens=4, regex=r"\d+"),
        ModelCall(
            purpose="classify", prompt="x", max_new_tokens=4, regex="(yes|no)", subject="yes please"
        ),  # fmt: skip
    ]
    model = OfflineModel()
    results = model.complete_many(calls)
    assert isinstance(results[0], ModelError) and "EBNF" in str(results[0])
    assert isinstance(results[1], ModelError) and "regex" in str(results[1])
    assert isinstance(results[2], ModelReply) and results[2].value == "yes"
    assert model.usage.run.failures == 2 and model.usage.run.requests == 3


def test_answers_are_deterministic() -> None:
    call = classify("unlimited liability", choice_descriptions=DESCRIPTIONS)
    assert {OfflineModel().complete(call).text for _ in range(5)} == {"high"}


def test_it_warns_once_that_no_model_server_is_in_use(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    model = OfflineModel()
    model.complete(classify("a"))
    model.complete(classify("b"))
    warnings = [r for r in caplog.records if "NO MODEL SERVER" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING


def test_in_a_dagster_job_with_usage_and_a_setup_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)

    @dg.op
    def triage(model: OfflineModel) -> dict:
        results = model.complete_many(
            [classify(s, choice_descriptions=DESCRIPTIONS) for s in ("unlimited liability", "x")]
        )
        labels = [r.value for r in results if isinstance(r, ModelReply)]
        return {"labels": labels, "usage": model.usage.run.as_metadata()}

    @dg.job
    def triage_job() -> None:
        triage()

    result = triage_job.execute_in_process(resources={"model": OfflineModel()})
    out = result.output_for_node("triage")
    assert out["labels"] == ["high", "low"]
    assert out["usage"]["llm.requests"] == 2 and out["usage"]["llm.cost_usd"] == 0
    assert out["usage"]["llm.prompt_tokens"] > 0
    assert sum("NO MODEL SERVER" in r.getMessage() for r in caplog.records) == 1

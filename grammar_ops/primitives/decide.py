"""`decide.*`: choose which declared branches of a decision step run.

`decide.rules` evaluates aggregate expressions over the input's rows; `decide.model` asks a model
to pick one branch. Both produce a `Decision` whose reason says why.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator

from grammar_ops.context import PrimitiveContext
from grammar_ops.contracts import Decision, Kind
from grammar_ops.findings import PrimitiveError
from grammar_ops.model import ModelCall
from grammar_ops.primitive import Primitive, PrimitiveConfig
from grammar_ops.primitives.assertion import ROW_KINDS, AggregateExpression, evaluate_aggregate
from grammar_ops.primitives.llm import call_models
from grammar_ops.rows import preview_text

# Use with fullmatch: `^...$` with match() would accept a final newline.
BRANCH_NAME = re.compile(r"[A-Za-z0-9_]+")


def _check_branches(branches: list[str]) -> list[str]:
    bad = [b for b in branches if not BRANCH_NAME.fullmatch(b)]
    if bad:
        raise ValueError(f"branch names must match ^[A-Za-z0-9_]+$ (step names); got {bad}")
    return branches


class DecisionRule(PrimitiveConfig):
    if_: AggregateExpression = Field(
        alias="if", description="Aggregate expression, e.g. `count(label == 'high') > 0`."
    )
    then: list[str] = Field(min_length=1, description="Branches to run when it is true.")
    name: str | None = Field(None, description="A name for the rule, used in the reason.")

    check_then = field_validator("then")(_check_branches)


class RulesConfig(
    PrimitiveConfig,
    json_schema_extra={
        "examples": [
            {
                "rules": [{"if": "count(label == 'high') > 0", "then": ["deep_review"]}],
                "else": ["summary"],
            }
        ]
    },
):
    rules: list[DecisionRule] = Field(min_length=1, description="Rules, checked in order.")
    else_: list[str] = Field(
        default_factory=list, alias="else", description="Branches to run when no rule matches."
    )
    mode: Literal["first_match", "all_matching"] = Field(
        "first_match",
        description="first_match: the first true rule decides; all_matching: the union of the "
        "branches of every true rule.",
    )

    check_else = field_validator("else_")(_check_branches)


class Rules(Primitive):
    name = "decide.rules"
    summary = "Choose branches by aggregate-expression rules over the input rows."
    description = (
        "Evaluates each rule's aggregate expression (count/sum/min/max/avg/any/all over rows); the "
        "first true rule's `then` branches are chosen (or, with mode all_matching, the union of "
        "every true rule's), else the `else` branches. The reason names the matching rule."
    )
    accepts = ROW_KINDS
    produces = Kind.DECISION
    Config = RulesConfig

    def run(self, value: Any, config: RulesConfig, ctx: PrimitiveContext) -> Decision:
        chosen: list[str] = []
        reasons: list[str] = []
        for index, rule in enumerate(config.rules, start=1):
            if evaluate_aggregate(rule.if_, value, f"decide.rules rule {index}"):
                label = f"rule {index}" + (f" ({rule.name})" if rule.name else "")
                reasons.append(f"{label} `{rule.if_}` matched")
                chosen.extend(b for b in rule.then if b not in chosen)
                if config.mode == "first_match":
                    break
        if reasons:
            return Decision(branches=chosen, reason="; ".join(reasons) + f" -> {chosen}")
        return Decision(
            branches=list(config.else_),
            reason=f"no rule matched -> else {list(config.else_)}",
        )


class ModelDecisionConfig(
    PrimitiveConfig,
    json_schema_extra={
        "examples": [
            {
                "question": "Do these results need a deeper review?",
                "branches": {"deep_review": "some items are risky", "summary": "all routine"},
            }
        ]
    },
):
    question: str = Field(min_length=1, description="What the model decides.")
    branches: list[str] | dict[str, str] = Field(
        description="Branches to choose from: a list, or a mapping of branch to when to choose it."
    )
    max_input_chars: int = Field(4000, gt=0, description="Cut the input shown after this length.")
    model: str = Field("worker", description="Model role to call.")

    @field_validator("branches")
    @classmethod
    def _valid_branches(cls, branches: list[str] | dict[str, str]) -> Any:
        names = _check_branches(list(branches))
        if len(names) < 2 or len(set(names)) != len(names):
            raise ValueError("branches must be at least two distinct names")
        return branches


class ModelDecision(Primitive):
    name = "decide.model"
    model_calls = "per_run"
    summary = "Let a model choose one of the declared branches, given the input."
    description = (
        "Shows the model the question, the branches (with descriptions) and the input (as JSON, "
        "cut to max_input_chars); decoding is constrained to the branch names."
    )
    accepts = ROW_KINDS
    produces = Kind.DECISION
    Config = ModelDecisionConfig

    def model_role(self, config: Any) -> str | None:
        return str(config.model)

    def run(self, value: Any, config: ModelDecisionConfig, ctx: PrimitiveContext) -> Decision:
        names = list(config.branches)
        described = config.branches if isinstance(config.branches, dict) else {}
        options = "\n".join(
            f"- {n}: {described[n]}" if described.get(n) else f"- {n}" for n in names
        )
        data = preview_text(value, config.max_input_chars)
        call = ModelCall(
            purpose="decide",
            prompt=f"{config.question}\nChoose exactly one:\n{options}\nAnswer with the name "
            f"only.\n\nInput:\n{data}",
            max_new_tokens=16,
            choices=tuple(names),
            subject=data,
            choice_descriptions={n: described.get(n, n) for n in names},
        )
        (reply,) = call_models([call], config.model, ctx, "decide.model")
        choice = str(reply.value)
        if choice not in names:
            raise PrimitiveError(f"decide.model: the model answered `{choice}`, not one of {names}")
        return Decision(branches=[choice], reason=f"model `{reply.model}` chose {choice}")

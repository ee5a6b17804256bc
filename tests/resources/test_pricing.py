"""Prices from the deployment's environment, applied to replies and to failed calls."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from grammar_ops.model import ModelCall, ModelError, ModelReply
from resources.pricing import (
    PRICE_CACHED_ENV,
    PRICE_COMPLETION_ENV,
    PRICE_PROMPT_ENV,
    ModelPrices,
    PricedModel,
    PriceError,
    prices_from_environment,
)

CALL = ModelCall(purpose="generate", prompt="p", max_new_tokens=8)


class Answers:
    """A model client that answers 1,000 prompt tokens (400 cached) and 100 completion tokens,
    and fails the same way after spending them."""

    model_name = "fake"

    def complete(self, call: ModelCall) -> ModelReply:
        return ModelReply(
            "a", "a", "fake", prompt_tokens=1_000, completion_tokens=100, cached_tokens=400
        )

    def complete_many(self, calls: Sequence[ModelCall]) -> list[ModelReply | ModelError]:
        error = ModelError("cut off", last_response="{")
        error.prompt_tokens, error.completion_tokens = 1_000, 100
        return [self.complete(calls[0]), error]


def test_prices_are_read_from_the_environment_in_usd_per_million_tokens():
    environ = {PRICE_PROMPT_ENV: "2", PRICE_CACHED_ENV: "0.5", PRICE_COMPLETION_ENV: " 8 "}
    assert prices_from_environment(environ) == ModelPrices(prompt=2, cached=0.5, completion=8)
    assert prices_from_environment({}).free


@pytest.mark.parametrize("raw", ["cheap", "-1", "inf", "nan"])
def test_a_price_that_is_not_a_non_negative_number_names_its_variable(raw):
    with pytest.raises(PriceError, match=f"{PRICE_PROMPT_ENV}="):
        prices_from_environment({PRICE_PROMPT_ENV: raw})


def test_a_priced_model_prices_replies_and_failed_calls_that_spent_tokens():
    model = PricedModel(Answers(), ModelPrices(prompt=2, cached=0.5, completion=8))
    expected = (600 * 2 + 400 * 0.5 + 100 * 8) / 1e6
    assert model.complete(CALL).cost_usd == pytest.approx(expected)
    reply, error = model.complete_many([CALL, CALL])
    assert isinstance(error, ModelError)
    assert reply.cost_usd == pytest.approx(expected)
    assert error.cost_usd == pytest.approx((1_000 * 2 + 100 * 8) / 1e6)
    assert model.model_name == "fake"

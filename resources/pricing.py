"""What model tokens cost: prices per model resource, set by the deployment, applied per call.

Prices are deployment facts, like the server's URL and key, so they come from the environment
read when the definitions load (`MARIGOLD_SGLANG_PRICE_PROMPT`, `MARIGOLD_SGLANG_PRICE_CACHED`,
`MARIGOLD_SGLANG_PRICE_COMPLETION`, USD per million tokens), never from a launch's run config:
a launcher cannot make a run's tokens free. `bind_prices` records them per model resource key
when the model binding runs; the ops that call a model wrap it with `priced_model`, which puts
the cost on every reply and on every failed call that spent tokens. The offline model is
always bound at `$0.00`.

Example:
    >>> prices = ModelPrices(prompt=2.0, cached=0.5, completion=8.0)
    >>> round(prices.cost(prompt_tokens=1_000, completion_tokens=500, cached_tokens=400), 6)
    0.0054
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from grammar_ops.model import ModelCall, ModelClient, ModelError, ModelReply

PRICE_PROMPT_ENV = "MARIGOLD_SGLANG_PRICE_PROMPT"
PRICE_CACHED_ENV = "MARIGOLD_SGLANG_PRICE_CACHED"
PRICE_COMPLETION_ENV = "MARIGOLD_SGLANG_PRICE_COMPLETION"


class PriceError(ValueError):
    """A price variable is set to something that is not a non-negative number."""


@dataclass(frozen=True)
class ModelPrices:
    """USD per million tokens: prompt tokens not served from cache, cached ones, completion."""

    prompt: float = 0.0
    cached: float = 0.0
    completion: float = 0.0

    @property
    def free(self) -> bool:
        return not (self.prompt or self.cached or self.completion)

    def cost(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> float:
        """Cached prompt tokens at the cached price, the rest of the prompt at the prompt price."""
        cached = min(cached_tokens, prompt_tokens)
        return (
            (prompt_tokens - cached) * self.prompt
            + cached * self.cached
            + completion_tokens * self.completion
        ) / 1_000_000

    def per_token(self, prompt_share: float = 0.8) -> float:
        """A blended USD per token for estimates (uncached prompt and completion mixed)."""
        return (prompt_share * self.prompt + (1 - prompt_share) * self.completion) / 1_000_000

    def describe(self) -> str:
        if self.free:
            return "$0.00 (unpriced)"
        return (
            f"${self.prompt:g} prompt, ${self.cached:g} cached, ${self.completion:g} completion "
            "per 1M tokens"
        )


FREE = ModelPrices()


def prices_from_environment(environ: Mapping[str, str]) -> ModelPrices:
    """The prices the deployment set in `environ` (unset variables are $0).

    Raises:
        PriceError: a variable is not a non-negative number; names the variable.
    """
    values = {}
    for field_name, variable in (
        ("prompt", PRICE_PROMPT_ENV),
        ("cached", PRICE_CACHED_ENV),
        ("completion", PRICE_COMPLETION_ENV),
    ):
        raw = environ.get(variable, "").strip()
        if not raw:
            continue
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if not value >= 0 or value == float("inf"):
            raise PriceError(
                f"{variable}={raw!r} is not a price; give USD per million tokens, e.g. 0.6"
            )
        values[field_name] = value
    return ModelPrices(**values)


_BOUND: dict[str, ModelPrices] = {}
_LOCK = threading.Lock()


def bind_prices(resource_key: str, prices: ModelPrices) -> None:
    """Record the deployment's prices for the model bound to `resource_key`."""
    with _LOCK:
        _BOUND[resource_key] = prices


def bound_prices(resource_key: str) -> ModelPrices:
    """The prices bound to `resource_key` ($0 when none were)."""
    with _LOCK:
        return _BOUND.get(resource_key, FREE)


def price_book() -> dict[str, ModelPrices]:
    """Every binding, resource key to prices (a copy)."""
    with _LOCK:
        return dict(_BOUND)


def restore_price_book(book: Mapping[str, ModelPrices]) -> None:
    """Replace every binding with `book` (tests restore what they changed)."""
    with _LOCK:
        _BOUND.clear()
        _BOUND.update(book)


class PricedModel:
    """A model client whose replies, and failed calls that spent tokens, carry their cost."""

    def __init__(self, client: ModelClient, prices: ModelPrices):
        self.client = client
        self.prices = prices

    @property
    def model_name(self) -> str:
        return self.client.model_name

    def __getattr__(self, name: str) -> Any:  # usage, urls, ... of the wrapped resource
        return getattr(self.client, name)

    def complete(self, call: ModelCall) -> ModelReply:
        try:
            return self._price(self.client.complete(call))
        except ModelError as error:
            raise self._price(error) from None

    def complete_many(self, calls: Sequence[ModelCall]) -> list[ModelReply | ModelError]:
        return [self._price(result) for result in self.client.complete_many(calls)]

    def _price(self, result: Any) -> Any:
        tokens = (result.prompt_tokens, result.completion_tokens, result.cached_tokens)
        cost = self.prices.cost(*tokens)
        if isinstance(result, ModelError):
            result.cost_usd = cost
            return result
        return replace(result, cost_usd=cost)


def priced_model(resource_key: str, client: Any) -> Any:
    """`client` with the prices bound to `resource_key` applied, or as it is when unpriced."""
    prices = bound_prices(resource_key)
    return client if prices.free else PricedModel(client, prices)

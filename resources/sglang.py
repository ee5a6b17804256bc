"""`SGLangResource`: a Dagster resource that calls a model served by SGLang over HTTP.

It implements the grammar's `ModelClient`. Config is plain described fields, each with its
valid range; the live HTTP clients (an `httpx.Client` for the server check, `httpx.AsyncClient`s
for generation, on the event loop an anyio blocking portal runs in its own thread) are built in
`setup_for_execution` and closed in `teardown_after_execution`. Every call goes through one
async path with bounded concurrency, retries with exponential backoff and jitter, and
validation of structured answers; usage is counted per run and per step in `resource.usage`.

Concurrency: unless `max_in_flight` is set, the resource keeps each server's
`max_running_requests` (from `/server_info`) running plus `queue_headroom` more waiting in the
server's queue, as clients of continuous-batching servers do, so a slot the server frees is
refilled at once instead of after a round trip to this client. A server whose queue is full
answers HTTP 503, which is retried with backoff like any transient failure.

Example:
    ```python
    import dagster as dg
    from grammar_ops.model import ModelCall
    from resources import SGLangResource

    @dg.op
    def triage(context: dg.OpExecutionContext, model: SGLangResource) -> list[str]:
        calls = [ModelCall(purpose="classify", prompt=p, max_new_tokens=4,
                           choices=("low", "high")) for p in ["...", "..."]]
        with model.usage.step(str(context.op_handle)) as meter:
            replies = model.complete_many(calls)
        context.add_output_metadata(meter.as_metadata())
        return [r.value for r in replies if not isinstance(r, Exception)]

    defs = dg.Definitions(
        jobs=[dg.job(triage)],  # illustrative
        resources={"model": SGLangResource(base_url="http://gpu-1:30000",
                                           model="Qwen/Qwen2.5-7B-Instruct",
                                           api_key=dg.EnvVar("SGLANG_API_KEY"))},
    )
    ```
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import math
import random
import re
import ssl
import time
import uuid
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import dagster as dg
import httpx
from anyio.from_thread import BlockingPortal, start_blocking_portal
from pydantic import Field, PrivateAttr, model_validator
from tenacity import RetryCallState

from grammar_ops.failures import transient_status
from grammar_ops.model import ModelCall, ModelError, ModelReply
from grammar_ops.retrying import async_retrying, backoff_wait
from grammar_ops.schemas import SchemaNotAllowed, build_validator
from grammar_ops.tokens import count_tokens
from resources.model_errors import ModelAnswerError, ModelServerCheckError, ModelServerError
from resources.model_usage import ModelUsage
from resources.regex_choices import anchored_regex, choices_regex

logger = logging.getLogger(__name__)

DEFAULT_MAX_IN_FLIGHT = 32
"""Requests in flight per server when `/server_info` does not report `max_running_requests`."""

_SERVER_MESSAGE_LIMIT = 500
_CONNECTIONS_PER_POOL = 4
"""Connections per `httpx.AsyncClient`: httpcore scans every connection of a pool on each
request, which costs milliseconds per request at 64 connections, so the resource keeps several
small pools per server and sends each request through the least busy one."""


def _is_retryable_status(status: int) -> bool:
    return transient_status(status)


def display_url(url: str) -> str:
    """Return `url` without any user:password part, for messages and logs."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def server_message(response: httpx.Response) -> str:
    """Extract the server's error message from SGLang's native, OpenAI or auth error bodies."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return text[:_SERVER_MESSAGE_LIMIT] or response.reason_phrase
    message: Any = body
    if isinstance(body, Mapping):
        error = body.get("error")
        if isinstance(error, Mapping):
            message = error.get("message", error)
        elif error is not None:
            message = error
        elif "message" in body:
            message = body["message"]
        elif "detail" in body:
            message = body["detail"]
    return str(message)[:_SERVER_MESSAGE_LIMIT]


class _RetryableFailure(Exception):
    """One attempt failed in a way worth retrying (429, 5xx, timeout, dropped connection)."""

    def __init__(self, reason: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retry_after = retry_after


class SGLangResource(dg.ConfigurableResource):
    """A model served by SGLang (one server, or several data-parallel replicas), as a resource.

    Implements `grammar_ops.model.ModelClient`: `complete` for one call, `complete_many` for a
    batch answered with up to `in_flight_limit` prompts in flight (the servers' running capacity
    plus `queue_headroom` waiting, or `max_in_flight`), so one Dagster step keeps the server's
    continuous batching full.
    """

    base_url: str = Field(
        description=(
            "SGLang server URL, e.g. 'http://gpu-1:30000'. Several data-parallel replicas: "
            "separate URLs with commas; requests go to them in round robin."
        )
    )
    model: str | None = Field(
        default=None,
        description=(
            "The model the server must serve (its --model-path or --served-model-name); setup "
            "fails if it serves another. None accepts what the first server serves and requires "
            "every other server to serve the same."
        ),
    )
    api_key: str | None = Field(
        default=None,
        repr=False,
        description=(
            "The server's --api-key, sent as 'Authorization: Bearer'. Set it with "
            "EnvVar('SGLANG_API_KEY'); it is never logged."
        ),
    )
    server: Literal["sglang", "openai"] = Field(
        default="sglang",
        description=(
            "What kind of server base_url is. 'sglang': an SGLang server, checked through "
            "/model_info and /server_info. 'openai': any OpenAI-compatible server (vLLM, "
            "llama.cpp's llama-server, Ollama, TGI), checked through /v1/models (and /health "
            "where it has one) and called through /v1/chat/completions only; structured output "
            "goes as response_format json_schema, choices and regex as JSON-schema string "
            "constraints (the answer is a JSON string), and ebnf calls are refused."
        ),
    )
    api: Literal["native", "openai"] = Field(
        default="native",
        description=(
            "For server='sglang': 'native' uses SGLang's POST /generate; 'openai' uses POST "
            "/v1/chat/completions (the server applies the model's chat template). "
            "server='openai' always uses /v1/chat/completions."
        ),
    )
    connect_timeout_s: float = Field(default=5.0, gt=0, description="Seconds to open a connection.")
    request_timeout_s: float = Field(
        default=120.0, gt=0, description="Seconds to wait for one generation request's response."
    )
    setup_timeout_s: float = Field(
        default=30.0, gt=0, description="Seconds to wait for each server-check request at setup."
    )
    max_in_flight: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Most prompts in flight at once across all servers, used exactly. Default: for "
            "each server, its /server_info max_running_requests "
            f"({DEFAULT_MAX_IN_FLIGHT} when it is not reported) plus queue_headroom, summed."
        ),
    )
    queue_headroom: float = Field(
        default=0.25,
        ge=0,
        le=4,
        description=(
            "Extra requests kept waiting at each server beyond its max_running_requests, as a "
            "fraction of it (rounded up to whole requests of batch_size prompts, at least one "
            "when above 0), so continuous batching never idles while the next request travels. "
            "0 keeps exactly max_running_requests in flight. Ignored when max_in_flight is set."
        ),
    )
    batch_size: int = Field(
        default=1,
        ge=1,
        description=(
            "Prompts per native /generate request (sent as a `text` list). 1 sends one prompt "
            "per request. Only for api='native'."
        ),
    )
    max_new_tokens_limit: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Most tokens any call may generate: a call asking for more is sent with this "
            "limit, and an answer cut there fails as cut off. For small servers (a CPU, a "
            "short context) where a call's own bound would run for minutes. None: as each "
            "call asks."
        ),
    )
    retry_max_attempts: int = Field(
        default=5, ge=1, description="Attempts per request, counting the first, before giving up."
    )
    retry_backoff_base_s: float = Field(
        default=0.2, ge=0, description="Backoff before the first retry; doubles on every retry."
    )
    retry_backoff_max_s: float = Field(
        default=10.0, ge=0, description="Longest backoff between tries."
    )
    retry_jitter: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Fraction of each backoff that is randomised (0: none, 1: full jitter).",
    )
    price_per_1m_prompt_tokens: float = Field(
        default=0.0,
        ge=0,
        description="Cost in USD per million prompt tokens not served from cache.",
    )
    price_per_1m_completion_tokens: float = Field(
        default=0.0, ge=0, description="Cost in USD per million completion tokens."
    )
    price_per_1m_cached_tokens: float = Field(
        default=0.0,
        ge=0,
        description="Cost in USD per million prompt tokens served from the cache.",
    )
    log_prompts: bool = Field(
        default=False,
        description="Log full prompts and answers at INFO level. Off by default: prompts may "
        "hold private data.",
    )

    @model_validator(mode="after")
    def _batches_need_the_native_route(self) -> SGLangResource:
        if self.batch_size > 1 and self.chat_route:
            raise ValueError(
                "batch_size > 1 needs api='native' on server='sglang' "
                "(/v1/chat/completions has no list); set batch_size=1"
            )
        return self

    _client: httpx.Client | None = PrivateAttr(default=None)
    _pools: dict[str, list[httpx.AsyncClient]] = PrivateAttr(default_factory=dict)
    _pool_busy: dict[str, list[int]] = PrivateAttr(default_factory=dict)
    _portal: BlockingPortal | None = PrivateAttr(default=None)
    _portal_exit: ExitStack | None = PrivateAttr(default=None)
    _slots: asyncio.Semaphore | None = PrivateAttr(default=None)
    _urls: list[str] = PrivateAttr(default_factory=list)
    _round_robin: Any = PrivateAttr(default=None)
    _in_flight_limit: int = PrivateAttr(default=0)
    _usage: ModelUsage = PrivateAttr(default_factory=ModelUsage)
    _rng: random.Random = PrivateAttr(default_factory=random.Random)
    _served_model: str | None = PrivateAttr(default=None)
    _validators: dict[str, Any] = PrivateAttr(default_factory=dict)

    # ----------------------------------------------------------------- lifecycle

    @property
    def model_name(self) -> str:
        """The configured model, or (when `model` is None) the one the server said it serves."""
        return self.model or self._served_model or ""

    @property
    def usage(self) -> ModelUsage:
        """Usage counted since setup: `usage.run` for the run, `usage.step(key)` per step."""
        return self._usage

    @property
    def urls(self) -> list[str]:
        """The server URLs from `base_url`, without trailing slashes."""
        urls = [u.strip().rstrip("/") for u in self.base_url.split(",") if u.strip()]
        if not urls:
            raise ModelServerCheckError(
                "SGLangResource.base_url is empty; give a URL such as 'http://gpu-1:30000'"
            )
        for url in urls:
            if urlsplit(url).scheme not in ("http", "https"):
                raise ModelServerCheckError(
                    f"SGLangResource.base_url entry {display_url(url)!r} is not an http(s) URL; "
                    "give one such as 'http://gpu-1:30000'"
                )
        return urls

    @property
    def server_label(self) -> str:
        """How messages name the server: 'SGLang server' or 'OpenAI-compatible server'."""
        return "SGLang server" if self.server == "sglang" else "OpenAI-compatible server"

    @property
    def _kind_phrase(self) -> str:
        return "an SGLang server" if self.server == "sglang" else "an OpenAI-compatible server"

    @property
    def chat_route(self) -> bool:
        """Whether calls go to /v1/chat/completions (server='openai', or api='openai')."""
        return self.server == "openai" or self.api == "openai"

    @property
    def in_flight_limit(self) -> int:
        """The most prompts this resource keeps in flight (known after setup)."""
        return self._in_flight_limit

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Check every server, size concurrency, and open the HTTP clients."""
        self._usage = ModelUsage()
        self._urls = self.urls
        self._round_robin = itertools.cycle(range(len(self._urls)))
        self._served_model = None
        self._client = httpx.Client(
            headers=self._headers(), timeout=httpx.Timeout(self.setup_timeout_s)
        )
        try:
            capacities = [self._check_server(url) for url in self._urls]
            self._in_flight_limit = self.max_in_flight or sum(
                self._with_headroom(capacity) for capacity in capacities
            )
            # One loop for the whole run: the async clients are bound to the loop they run on.
            self._portal_exit = ExitStack()
            self._portal = self._portal_exit.enter_context(
                start_blocking_portal(name=f"sglang-{self.model_name}")
            )
            self._portal.call(self._open_async_client)
        except BaseException:
            self._close()
            raise
        logger.info(
            "Model %r ready at %d %s(s) %s via %s; up to %d prompts in flight "
            "(servers run %d at once)",
            self.model_name,
            len(self._urls),
            self.server_label,
            ", ".join(display_url(u) for u in self._urls),
            "/v1/chat/completions" if self.chat_route else "/generate",
            self._in_flight_limit,
            sum(capacities),
        )

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        """Close the HTTP clients and stop the portal's event loop."""
        self._close()

    def _close(self) -> None:
        try:
            if self._portal is not None and self._pools:
                self._portal.call(self._close_pools)
        finally:
            self._pools = {}
            try:
                if self._portal is not None:
                    self._portal.call(self._portal.stop, True)  # cancel what is left on it
                if self._portal_exit is not None:
                    self._portal_exit.close()  # joins the portal's thread
            finally:
                self._portal, self._portal_exit = None, None
                if self._client is not None:
                    self._client.close()
                self._client = None

    async def _open_async_client(self) -> None:
        slots = max(1, self._in_flight_limit // max(1, self.batch_size))
        self._slots = asyncio.Semaphore(slots)
        timeout = httpx.Timeout(self.request_timeout_s, connect=self.connect_timeout_s, pool=None)
        limits = httpx.Limits(
            max_connections=_CONNECTIONS_PER_POOL, max_keepalive_connections=_CONNECTIONS_PER_POOL
        )
        pools_per_server = -(-slots // _CONNECTIONS_PER_POOL)
        tls = ssl.create_default_context()  # one context shared by every pool
        for url in self._urls:
            self._pools[url] = [
                httpx.AsyncClient(
                    headers=self._headers(), timeout=timeout, limits=limits, verify=tls
                )
                for _ in range(pools_per_server)
            ]
            self._pool_busy[url] = [0] * pools_per_server
        # Warm the async stack (its lazy imports, one connection per server) before any step.
        warm_path = "/health" if self.server == "sglang" else "/v1/models"
        for url in self._urls:
            await self._pools[url][0].get(url + warm_path)

    async def _close_pools(self) -> None:
        for clients in self._pools.values():
            for client in clients:
                await client.aclose()

    def _with_headroom(self, capacity: int) -> int:
        """Prompts to keep in flight at a server running `capacity` at once.

        Counted in whole requests of `batch_size` prompts: enough to fill every running slot,
        plus `queue_headroom` of that (at least one request) waiting in the server's queue.
        """
        if self.queue_headroom <= 0:
            return capacity
        running = -(-capacity // self.batch_size)
        waiting = math.ceil(running * self.queue_headroom)
        return (running + waiting) * self.batch_size

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    # ----------------------------------------------------------------- server check

    def _get_json(self, url: str, paths: Sequence[str]) -> dict[str, Any]:
        """GET the first of `paths` the server has (newer SGLang renamed /get_* routes)."""
        assert self._client is not None
        where = display_url(url)
        for path in paths:
            try:
                response = self._client.get(url + path)
            except httpx.HTTPError as exc:
                raise ModelServerCheckError(
                    f"{self.server_label} at {where} did not answer GET {path} "
                    f"({type(exc).__name__}: {exc})",
                    url=where,
                ) from None
            if response.status_code == 404:
                continue
            if response.status_code in (401, 403):
                hint = (
                    "the configured api_key was rejected; set api_key to the server's --api-key"
                    if self.api_key
                    else "the server requires an API key; set api_key=EnvVar('SGLANG_API_KEY')"
                )
                raise ModelServerCheckError(
                    f"{self.server_label} at {where} refused GET {path} as unauthorised "
                    f"(HTTP {response.status_code}): {hint}",
                    url=where,
                    status=response.status_code,
                )
            if response.status_code != 200:
                raise ModelServerCheckError(
                    f"{self.server_label} at {where} answered GET {path} with HTTP "
                    f"{response.status_code}: {server_message(response)}",
                    url=where,
                    status=response.status_code,
                )
            try:
                body = response.json()
            except ValueError:
                body = None
            if not isinstance(body, dict):
                raise ModelServerCheckError(
                    f"{self.server_label} at {where} answered GET {path} with a body that is not a "
                    f"JSON object; is base_url {self._kind_phrase}?",
                    url=where,
                )
            return body
        raise ModelServerCheckError(
            f"{self.server_label} at {where} has none of {', '.join(paths)} (HTTP 404); "
            f"is base_url {self._kind_phrase}?",
            url=where,
            status=404,
        )

    def _check_server(self, url: str) -> int:
        """Check health, authorisation and the served model; return the server's capacity."""
        assert self._client is not None
        where = display_url(url)
        try:
            health = self._client.get(url + "/health")
        except httpx.HTTPError as exc:
            start = (
                "start it (python -m resources.sglang_launch)"
                if self.server == "sglang"
                else "start it"
            )
            raise ModelServerCheckError(
                f"{self.server_label} at {where} is not reachable ({type(exc).__name__}: {exc}); "
                f"{start} or fix base_url",
                url=where,
            ) from None
        # OpenAI-compatible servers without a /health route (Ollama) are checked by /v1/models.
        missing_ok = self.server == "openai" and health.status_code == 404
        if health.status_code != 200 and not missing_ok:
            raise ModelServerCheckError(
                f"{self.server_label} at {where} is not healthy: GET /health answered HTTP "
                f"{health.status_code} (503 while it is starting or overloaded); expected 200",
                url=where,
                status=health.status_code,
            )
        if self.server == "sglang":
            served, first, capacity, source = self._sglang_identity(url)
        else:
            served, first, capacity, source = self._openai_identity(url)
        expected = self.model or self._served_model
        if expected is None:
            if not first:
                raise ModelServerCheckError(
                    f"{self.server_label} at {where} does not say which model it serves "
                    f"({source}); set model explicitly",
                    url=where,
                )
            self._served_model = first
        elif expected not in served:
            shown = ", ".join(sorted(served)) or "an unnamed model"
            raise ModelServerCheckError(
                f"{self.server_label} at {where} serves {shown}, but this resource expects model "
                f"{expected!r}; set model to what the server serves or point base_url at a "
                f"server serving {expected!r}",
                url=where,
            )
        if capacity is None:
            logger.log(
                logging.WARNING if self.server == "sglang" else logging.INFO,
                "%s at %s does not report how many requests it runs at once; assuming %d "
                "(set max_in_flight to size it)",
                self.server_label,
                where,
                DEFAULT_MAX_IN_FLIGHT,
            )
            return DEFAULT_MAX_IN_FLIGHT
        return capacity

    def _sglang_identity(self, url: str) -> tuple[set[str], str | None, int | None, str]:
        """Served model names, the default one, and capacity from SGLang's info routes."""
        model_info = self._get_json(url, ("/model_info", "/get_model_info"))
        server_info = self._get_json(url, ("/server_info", "/get_server_info"))
        served = {
            str(name)
            for name in (
                model_info.get("model_path"),
                model_info.get("served_model_name"),
                server_info.get("served_model_name"),
                server_info.get("model_path"),
            )
            if name
        }
        first = model_info.get("model_path") or server_info.get("served_model_name")
        return (
            served,
            str(first) if first else None,
            _max_running_requests(server_info),
            "no model_path in /model_info",
        )

    def _openai_identity(self, url: str) -> tuple[set[str], str | None, int | None, str]:
        """Served model ids from /v1/models; capacity from llama.cpp's /props where present."""
        listing = self._get_json(url, ("/v1/models",))
        entries = listing.get("data")
        ids = [
            str(entry["id"])
            for entry in (entries if isinstance(entries, list) else [])
            if isinstance(entry, Mapping) and entry.get("id")
        ]
        props = self._probe_json(url, "/props")
        slots = props.get("total_slots") if props else None
        capacity = slots if isinstance(slots, int) and not isinstance(slots, bool) else None
        return set(ids), ids[0] if ids else None, capacity, "/v1/models lists no model"

    def _probe_json(self, url: str, path: str) -> dict[str, Any] | None:
        """GET an optional route: its JSON object, or None when the server has none to give."""
        assert self._client is not None
        try:
            response = self._client.get(url + path)
            body = response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None
        return body if isinstance(body, dict) else None

    def server_metrics(self) -> dict[str, dict[str, float]]:
        """Read each server's Prometheus `/metrics` (needs `--enable-metrics`), summed by name.

        Returns:
            For each server URL, metric name (labels dropped, samples summed) to value.
        """
        if self._client is None:
            raise ModelServerError(self._not_set_up())
        out: dict[str, dict[str, float]] = {}
        for url in self._urls:
            response = self._client.get(url + "/metrics")
            response.raise_for_status()
            values: dict[str, float] = {}
            for line in response.text.splitlines():
                if not line or line.startswith("#"):
                    continue
                name, _, value = line.rpartition(" ")
                name = name.split("{", 1)[0]
                try:
                    values[name] = values.get(name, 0.0) + float(value)
                except ValueError:
                    continue
            out[display_url(url)] = values
        return out

    # ----------------------------------------------------------------- ModelClient

    def complete(self, call: ModelCall) -> ModelReply:
        """Answer one call, or raise the `ModelError` that says why it failed."""
        result = self.complete_many([call])[0]
        if isinstance(result, ModelError):
            raise result
        return result

    def complete_many(self, calls: Sequence[ModelCall]) -> list[ModelReply | ModelError]:
        """Answer many calls with up to `in_flight_limit` prompts in flight, results in order.

        Safe to call from any thread (a Dagster op's, several at once, or one running an event
        loop of its own): the work runs on the resource's portal. A failed call yields its
        `ModelError` in place.
        """
        if self._portal is None or not self._pools:
            raise ModelServerError(self._not_set_up())
        calls = list(calls)
        if not calls:
            return []
        started = time.perf_counter()
        results = self._portal.call(self._complete_all, calls)
        for result in results:
            if isinstance(result, ModelError):
                self._usage.record_failure(result)
            else:
                self._usage.record(result)
        failures = sum(isinstance(r, ModelError) for r in results)
        logger.log(
            logging.INFO if len(calls) > 1 or failures else logging.DEBUG,
            "Model %r answered %d of %d call(s) in %.2fs (%d failed, %d retries)",
            self.model_name,
            len(calls) - failures,
            len(calls),
            time.perf_counter() - started,
            failures,
            sum(int(getattr(r, "retries", 0)) for r in results),
        )
        return results

    def _not_set_up(self) -> str:
        return (
            "SGLangResource is not set up: bind it as a Dagster resource, or outside Dagster use "
            "`with resource.yield_for_execution(dagster.build_init_resource_context()) as model:`"
        )

    async def _complete_all(self, calls: list[ModelCall]) -> list[ModelReply | ModelError]:
        """Send `calls` in groups of `batch_size` from as many workers as there are slots.

        Workers build each request shortly before sending it, so the first requests go out at
        once instead of after every request body of a large batch has been built.
        """
        assert self._slots is not None
        results: list[ModelReply | ModelError | None] = [None] * len(calls)
        size = self.batch_size
        groups = iter(range(0, len(calls), size))
        # Twice as many workers as slots: while one request is at the server, another worker
        # has the next request built and waiting for the slot, so no slot idles between them.
        workers = min(-(-len(calls) // size), 2 * max(1, self._in_flight_limit // size))

        async def work() -> None:
            for start in groups:
                indexes = range(start, min(start + size, len(calls)))
                answers = await self._send_with_retries([calls[i] for i in indexes])
                for index, answer in zip(indexes, answers, strict=True):
                    results[index] = answer

        await asyncio.gather(*(work() for _ in range(workers)))
        return [r for r in results if r is not None]

    # ----------------------------------------------------------------- one request

    def _next_url(self) -> str:
        return self._urls[next(self._round_robin)]

    async def _post(self, url: str, path: str, body: dict[str, Any]) -> httpx.Response:
        """POST once a slot is free, through the least busy of the server's connection pools.

        A slot is held only while the request is at the server: not while a failed request
        backs off, nor while an answer is validated, so the server's queue stays full.
        """
        assert self._slots is not None
        content = json.dumps(body)
        async with self._slots:
            clients, busy = self._pools[url], self._pool_busy[url]
            lane = min(range(len(busy)), key=busy.__getitem__)
            busy[lane] += 1
            try:
                response = await clients[lane].post(url + path, content=content)
            finally:
                busy[lane] -= 1
        await asyncio.sleep(0)  # let a request waiting for this slot go out before we parse
        return response

    async def _send_with_retries(self, calls: list[ModelCall]) -> list[ModelReply | ModelError]:
        """Send one request for `calls`, retrying transient failures; one result per call."""
        refusals = [self._refusal(call) for call in calls]
        if any(refusals):
            return [
                ModelServerError(reason or "sent with a call this server cannot take", retries=0)
                for reason in refusals
            ]
        call_ids = [uuid.uuid4().hex[:16] for _ in calls]
        started = time.perf_counter()

        def log_retry(state: RetryCallState) -> None:
            failure = state.outcome.exception() if state.outcome else None
            logger.info(
                "Model request for %d call(s) failed (%s); retry %d of %d in %.2fs",
                len(calls),
                getattr(failure, "reason", failure),
                state.attempt_number,
                self.retry_max_attempts - 1,
                state.upcoming_sleep,
            )

        tries = async_retrying(
            self.retry_max_attempts,
            backoff_wait(
                self.retry_backoff_base_s, self.retry_backoff_max_s, self.retry_jitter, self._rng
            ),
            retry_on=lambda error: isinstance(error, _RetryableFailure),
            before_sleep=log_retry,
        )
        try:
            async for attempt in tries:
                with attempt:
                    return await self._send_once(
                        calls, call_ids, attempt.retry_state.attempt_number - 1, started
                    )
        except _RetryableFailure as failure:
            message = (
                f"Model request failed after {self.retry_max_attempts} attempt(s); last error: "
                f"{failure.reason}. Raise retry_max_attempts or request_timeout_s, or check the "
                "server"
            )
            return [
                ModelServerError(
                    message,
                    status=failure.status,
                    retries=self.retry_max_attempts - 1,
                    retryable=True,
                )
                for _ in calls
            ]
        raise AssertionError("the retry loop ended without an answer or a failure")

    async def _send_once(
        self, calls: list[ModelCall], call_ids: list[str], attempt: int, started: float
    ) -> list[ModelReply | ModelError]:
        """One try: the answers, or `_RetryableFailure` when another try may succeed."""
        url = self._next_url()
        where = display_url(url)
        path, body = self._request_body(calls, [f"{c}.{attempt}" for c in call_ids])
        if self.log_prompts:
            for call, call_id in zip(calls, call_ids, strict=True):
                logger.info("Model call %s prompt: %s", call_id, call.prompt)
        try:
            response = await self._post(url, path, body)
        except httpx.TimeoutException as exc:
            raise _RetryableFailure(
                f"{where}{path} timed out ({type(exc).__name__}; "
                f"request_timeout_s={self.request_timeout_s})"
            ) from None
        except httpx.TransportError as exc:
            raise _RetryableFailure(
                f"{where}{path} connection failed ({type(exc).__name__}: {exc})"
            ) from None
        status = response.status_code
        if status == 200:
            latency = time.perf_counter() - started
            return self._read_answers(calls, call_ids, response, where, attempt, latency)
        message = server_message(response)
        if _is_retryable_status(status):
            raise _RetryableFailure(
                f"{where}{path} answered HTTP {status}: {message}",
                status=status,
                retry_after=_retry_after(response),
            )
        hint = " (check api_key against the server's --api-key)" if status in (401, 403) else ""
        error_text = f"{where}{path} refused the request with HTTP {status}: {message}{hint}"
        return [
            ModelServerError(error_text, url=where, status=status, retries=attempt) for _ in calls
        ]

    def _request_body(self, calls: list[ModelCall], rids: list[str]) -> tuple[str, dict[str, Any]]:
        if self.chat_route:
            (call,) = calls
            body: dict[str, Any] = {
                "model": self.model_name,
                "messages": [{"role": "user", "content": call.prompt}],
                "max_tokens": self._max_new_tokens(call),
                "temperature": call.temperature,
            }
            if self.server == "sglang":
                body["rid"] = rids[0]
            schema = self.response_schema(call)
            if schema is not None:
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "answer", "schema": schema, "strict": True},
                }
            elif call.choices is not None:
                body["regex"] = choices_regex(call.choices)
            elif call.regex is not None:
                body["regex"] = call.regex
            elif call.ebnf is not None:
                body["ebnf"] = call.ebnf
            return "/v1/chat/completions", body
        params = [self._sampling_params(call) for call in calls]
        if len(calls) == 1:
            return "/generate", {
                "text": calls[0].prompt,
                "sampling_params": params[0],
                "rid": rids[0],
            }
        return "/generate", {
            "text": [c.prompt for c in calls],
            "sampling_params": params,
            "rid": rids,
        }

    def _max_new_tokens(self, call: ModelCall) -> int:
        if self.max_new_tokens_limit is None:
            return call.max_new_tokens
        return min(call.max_new_tokens, self.max_new_tokens_limit)

    def response_schema(self, call: ModelCall) -> dict[str, Any] | None:
        """The `response_format` schema of a chat call, if its constraint travels as one.

        An OpenAI-compatible server has no regex parameter of its own: choices become a string
        enum and a regex a string `pattern` (anchored, as llama.cpp's converter requires), so
        the answer is a JSON string. SGLang takes choices and regex as body extras instead.
        """
        if call.json_schema is not None:
            return dict(call.json_schema)
        if self.server != "openai":
            return None
        if call.choices is not None:
            return {"type": "string", "enum": list(call.choices)}
        if call.regex is not None:
            return {"type": "string", "pattern": anchored_regex(call.regex)}
        return None

    def _refusal(self, call: ModelCall) -> str | None:
        """Why this resource cannot send `call` to its server at all, if it cannot."""
        if self.server == "openai" and call.ebnf is not None:
            return (
                "an ebnf constraint needs server='sglang': OpenAI-compatible servers have no "
                "portable grammar parameter; give the call a json_schema, regex or choices"
            )
        return None

    def _sampling_params(self, call: ModelCall) -> dict[str, Any]:
        params: dict[str, Any] = {
            "max_new_tokens": self._max_new_tokens(call),
            "temperature": call.temperature,
        }
        if call.json_schema is not None:
            params["json_schema"] = json.dumps(call.json_schema)
        elif call.choices is not None:
            params["regex"] = choices_regex(call.choices)
        elif call.regex is not None:
            params["regex"] = call.regex
        elif call.ebnf is not None:
            params["ebnf"] = call.ebnf
        return params

    # ----------------------------------------------------------------- answers

    def _read_answers(
        self,
        calls: list[ModelCall],
        call_ids: list[str],
        response: httpx.Response,
        where: str,
        attempt: int,
        latency: float,
    ) -> list[ModelReply | ModelError]:
        try:
            body = response.json()
            if self.chat_route:
                items = [_openai_item(body)]
            else:
                items = [_native_item(i) for i in (body if isinstance(body, list) else [body])]
            if len(items) != len(calls):
                raise ValueError(f"{len(items)} answers for {len(calls)} prompts")
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            shape = "OpenAI chat completion" if self.chat_route else "SGLang /generate"
            error = ModelServerError(
                f"{where} answered HTTP 200 with a body this client cannot read "
                f"({type(exc).__name__}: {exc}); expected the {shape} response shape",
                url=where,
                status=200,
                retries=attempt,
            )
            return [error for _ in calls]
        results: list[ModelReply | ModelError] = []
        for call, call_id, item in zip(calls, call_ids, items, strict=True):
            raw, finish_reason, prompt_tokens, completion_tokens, cached_tokens = item
            estimated = not (prompt_tokens or completion_tokens)
            if estimated:  # the server reported no usage: count it with the tokenizer
                prompt_tokens, completion_tokens = count_tokens(call.prompt), count_tokens(raw)
            if self.log_prompts:
                logger.info("Model call %s answer: %s", call_id, raw)
            try:
                text = self._unwrapped(call, raw, finish_reason)
                value = self._validate(call, text, finish_reason)
            except ModelAnswerError as exc:
                exc.url, exc.retries, exc.last_response = where, attempt, raw
                # The unusable answer still took tokens: usage and budgets count them.
                exc.prompt_tokens, exc.completion_tokens = prompt_tokens, completion_tokens
                exc.cached_tokens, exc.estimated = cached_tokens, estimated
                exc.cost_usd = self.cost_usd(prompt_tokens, completion_tokens, cached_tokens)
                results.append(exc)
                continue
            results.append(
                ModelReply(
                    text=text,
                    value=value,
                    model=self.model_name,
                    prompt_tokens=prompt_tokens,
                    completion_tokens=completion_tokens,
                    cached_tokens=cached_tokens,
                    latency_s=latency,
                    finish_reason=finish_reason,
                    retries=attempt,
                    cost_usd=self.cost_usd(prompt_tokens, completion_tokens, cached_tokens),
                    estimated=estimated,
                )
            )
        return results

    def cost_usd(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int) -> float:
        """Price tokens: cached prompt tokens at the cached price, the rest at the prompt price."""
        cached = min(cached_tokens, prompt_tokens)
        return (
            (prompt_tokens - cached) * self.price_per_1m_prompt_tokens
            + cached * self.price_per_1m_cached_tokens
            + completion_tokens * self.price_per_1m_completion_tokens
        ) / 1_000_000

    def _unwrapped(self, call: ModelCall, text: str, finish_reason: str) -> str:
        """The answer text; for choices and regex on server='openai', the JSON string decoded."""
        if self.server != "openai" or (call.choices is None and call.regex is None):
            return text
        if finish_reason != "stop":
            return text  # `_validate` says why a cut or aborted answer is unusable
        try:
            decoded = json.loads(text)
        except (ValueError, RecursionError):
            decoded = None
        if not isinstance(decoded, str):
            shown = text if len(text) <= 60 else text[:57] + "..."
            raise ModelAnswerError(
                f"the answer {shown!r} is not a JSON string; server='openai' sends choices and "
                "regex as a response_format string schema, so the answer must be one"
            )
        return decoded

    def _validate(self, call: ModelCall, text: str, finish_reason: str) -> Any:
        """Return the answer's value, or raise `ModelAnswerError` saying what is wrong."""
        if finish_reason == "abort":
            raise ModelAnswerError("the server aborted the request (finish_reason 'abort')")
        if finish_reason == "length" and call.constrained:
            raise ModelAnswerError(
                f"the answer was cut off at max_new_tokens={self._max_new_tokens(call)} "
                "(finish_reason 'length'), so the constrained output is incomplete; "
                + (
                    "raise max_new_tokens for this call"
                    if self._max_new_tokens(call) == call.max_new_tokens
                    else "raise the resource's max_new_tokens_limit"
                )
            )
        if call.json_schema is not None:
            try:
                value = json.loads(text)
            except ValueError as exc:
                raise ModelAnswerError(
                    f"the answer is not valid JSON ({exc}); expected JSON valid against the "
                    "call's json_schema"
                ) from None
            except RecursionError:
                raise ModelAnswerError(
                    "the answer is JSON nested too deeply to read; expected JSON valid against "
                    "the call's json_schema"
                ) from None
            errors = sorted(
                self._validator(call.json_schema).iter_errors(value), key=lambda e: list(e.path)
            )
            if errors:
                first = errors[0]
                where = "/".join(str(p) for p in first.path) or "(root)"
                raise ModelAnswerError(
                    f"the JSON answer does not match the call's json_schema at {where}: "
                    f"{first.message} ({len(errors)} problem(s) in all)"
                )
            return value
        if call.choices is not None:
            answer = text.strip()
            if answer not in call.choices:
                shown = answer if len(answer) <= 60 else answer[:57] + "..."
                raise ModelAnswerError(
                    f"the answer {shown!r} is not one of the choices {list(call.choices)}"
                )
            return answer
        if call.regex is not None:
            try:
                pattern = re.compile(call.regex)
            except re.error:
                return text  # a dialect Python cannot read: SGLang enforced it; keep the text
            if pattern.fullmatch(text) is None:
                raise ModelAnswerError("the answer does not match the call's regex")
        return text

    def _validator(self, schema: Mapping[str, Any]) -> Any:
        """A validator for the call's schema that never fetches (see grammar_ops.schemas)."""
        key = json.dumps(schema, default=str)  # no sort_keys: keys of mixed types cannot sort
        validator = self._validators.get(key)
        if validator is None:
            try:
                validator = build_validator(schema)
            except SchemaNotAllowed as exc:
                raise ModelAnswerError(
                    f"the call's json_schema cannot be used to check the answer: {exc}"
                ) from None
            if len(self._validators) < 256:
                self._validators[key] = validator
        return validator


def _max_running_requests(server_info: Mapping[str, Any]) -> int | None:
    sources: list[Any] = [server_info]
    states = server_info.get("internal_states")
    if isinstance(states, list):
        sources.extend(states)
    for source in sources:
        if isinstance(source, Mapping):
            value = source.get("max_running_requests")
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _finish_reason(raw: Any) -> str:
    if isinstance(raw, Mapping):
        return str(raw.get("type") or "stop")
    return str(raw) if raw else "stop"


def _native_item(item: Mapping[str, Any]) -> tuple[str, str, int, int, int]:
    meta = item["meta_info"]
    return (
        str(item["text"]),
        _finish_reason(meta.get("finish_reason")),
        int(meta.get("prompt_tokens") or 0),
        int(meta.get("completion_tokens") or 0),
        int(meta.get("cached_tokens") or 0),
    )


def _openai_item(body: Mapping[str, Any]) -> tuple[str, str, int, int, int]:
    choice = body["choices"][0]
    usage = body.get("usage") or {}
    details = usage.get("prompt_tokens_details") or {}
    return (
        str(choice["message"].get("content") or ""),
        _finish_reason(choice.get("finish_reason")),
        int(usage.get("prompt_tokens") or 0),
        int(usage.get("completion_tokens") or 0),
        int(details.get("cached_tokens") or 0),
    )

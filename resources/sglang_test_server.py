"""`SGLangTestServer`: an SGLang-compatible HTTP TEST DOUBLE for tests, benchmarks, quickstarts.

It is not a model and runs none. It is a real HTTP server on 127.0.0.1 (Starlette on uvicorn,
in a background thread or a subprocess, on an ephemeral port) that speaks SGLang's HTTP API the
way the platform's client uses it, so the client can be tested over real sockets:

- routes: `POST /generate` (single, or a batch with `text` as a list), `POST
  /v1/chat/completions`, `GET /health`, `/model_info` and `/server_info` (and their older
  `/get_*` names), `/v1/models`, and `/metrics` (Prometheus text, `sglang:`-style names);
  with `flavour="openai"` only what a plain OpenAI-compatible server has (see the config);
- SGLang's shapes: `meta_info` with `prompt_tokens`, `completion_tokens`, `cached_tokens`,
  `e2e_latency` and `finish_reason: {"type": "stop" | "length"}`; native errors as
  `{"error": {"message": ...}}`, OpenAI-route errors as `{"object": "error", "message", "type",
  "param", "code"}`, a missing or wrong key as 401 `{"error": "Unauthorized"}` (as SGLang's
  `--api-key` middleware answers; `/health` and `/metrics` need no key); HTTP 400 for unknown
  sampling parameters, a non-string `json_schema`, or more than one constraint;
- a capacity model: `max_running_requests` prompts run at once, up to `max_queued_requests`
  more wait, and a prompt takes `request_latency_s + token_latency_s * completion_tokens`;
  a prompt that finds the queue full gets HTTP 503;
- prefix-cache accounting: `cached_tokens` is the length of the longest prefix of the prompt
  already seen in an earlier prompt, in the approximate tokens of `resources.token_count`
  (word runs and punctuation characters, not a real tokenizer);
- fault injection (`FaultPlan`): HTTP 500, 503 and 429, hangs, dropped connections, output cut
  at `finish_reason: length`, and invalid JSON, by rate (seeded RNG, so deterministic for a given
  arrival order) and by scripted sequence;
- answers from a pluggable responder (`Responder`); the default answers a `json_schema` request
  with a schema-valid instance, a regex alternation (how choices are sent) with one of its
  alternatives, and anything else with a fixed sentence saying it came from a test double.

Counters (`stats()`) report requests received, prompts, statuses, faults injected per kind, the
most prompts observed running at once and at the server at once (running plus waiting), and
every `rid` answered with HTTP 200.

Example:
    >>> with SGLangTestServer(model="test-double") as server:
    ...     import httpx
    ...     httpx.get(server.url + "/health").status_code
    200
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import importlib
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from resources.json_schema_instances import generate_instance
from resources.regex_choices import literal_alternatives
from resources.token_count import count_tokens, split_tokens, truncate_to_tokens

FAULT_KINDS = ("http_500", "http_503", "http_429", "hang", "drop", "truncate", "invalid_json")
"""Faults the test double can inject into generation requests."""

SAMPLING_PARAMS = frozenset(
    {
        "max_new_tokens", "min_new_tokens", "temperature", "top_p", "top_k", "min_p",
        "frequency_penalty", "presence_penalty", "repetition_penalty", "stop", "stop_token_ids",
        "ignore_eos", "skip_special_tokens", "spaces_between_special_tokens", "no_stop_trim",
        "json_schema", "regex", "ebnf", "structural_tag", "n", "custom_params",
        "stream_interval", "logit_bias", "sampling_seed",
    }
)  # fmt: skip
"""Sampling parameter names SGLang's /generate accepts; any other gets HTTP 400."""

DEFAULT_ANSWER = "This answer comes from the SGLang-compatible test server, a test double."
_CACHE_NODE_LIMIT = 500_000


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt as the test double received it, handed to the responder."""

    prompt: str
    max_new_tokens: int
    api: str
    rid: str | None = None
    temperature: float = 1.0
    json_schema: Mapping[str, Any] | None = None
    regex: str | None = None
    ebnf: str | None = None


@dataclass(frozen=True)
class ScriptedAnswer:
    """A responder's answer with an explicit finish reason (a plain `str` means "stop")."""

    text: str
    finish_reason: str = "stop"


Responder = Callable[[GenerationRequest], "str | ScriptedAnswer"]
"""Answers one prompt. Must be a module-level function for a subprocess server."""


@dataclass(frozen=True)
class FaultPlan:
    """Which faults to inject into generation requests, and how often.

    Each generation request draws at most one fault: the next entry of `sequence` while it lasts
    (`None` for "no fault"), then one drawn from `rates` (kind to probability) with a RNG seeded
    by `seed`. A `hang` holds the request for `hang_s` (or until the server stops), then drops
    the connection without an answer. With `retry_after_s`, an injected 429 or 503 asks the
    client to wait that long (a `Retry-After` header).
    """

    rates: Mapping[str, float] = field(default_factory=dict)
    sequence: Sequence[str | None] = ()
    seed: int = 0
    hang_s: float = 30.0
    retry_after_s: float | None = None

    def __post_init__(self) -> None:
        unknown = [
            k for k in [*self.rates, *self.sequence] if k is not None and k not in FAULT_KINDS
        ]
        if unknown:
            raise ValueError(f"unknown fault kind(s) {unknown}; valid kinds: {list(FAULT_KINDS)}")
        if sum(self.rates.values()) > 1.0:
            raise ValueError("fault rates add up to more than 1")


@dataclass(frozen=True)
class SGLangTestServerConfig:
    """Everything that shapes the test double; picklable, so a subprocess server can take it."""

    model: str = "sglang-test-double"
    api_key: str | None = None
    max_running_requests: int = 16
    max_queued_requests: int = 1024
    request_latency_s: float = 0.0
    token_latency_s: float = 0.0
    faults: FaultPlan = field(default_factory=FaultPlan)
    enable_cache_report: bool = True
    responder: Responder | None = None
    host: str = "127.0.0.1"
    port: int = 0
    flavour: str = "sglang"
    """'sglang', or 'openai': a plain OpenAI-compatible server (as vLLM or llama.cpp's
    llama-server look to a client), which has only /health, /v1/models, /props (llama.cpp's,
    with `total_slots`), /metrics and /v1/chat/completions, and refuses SGLang's body extras
    (`rid`, `regex`, `ebnf`) with HTTP 400."""
    missing_routes: tuple[str, ...] = ()
    """Paths to leave out (e.g. `("/health",)` for a server like Ollama that has none)."""


@dataclass
class ServerStats:
    """Counters the test double keeps, as read by `SGLangTestServer.stats()`."""

    requests_received: int = 0
    prompts_received: int = 0
    responses_ok: int = 0
    status_counts: dict[int, int] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)
    max_running_observed: int = 0
    max_in_flight_observed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    answered_rids: list[str] = field(default_factory=list)


def default_responder(request: GenerationRequest) -> str:
    """Answer like a well-behaved constrained model would, with no model at all.

    A `json_schema` request gets a schema-valid instance (for a string enum, as choices reach
    an OpenAI-compatible server, one of its values by a stable hash of the prompt); a regex
    that is an alternation of literals (how the client sends choices to SGLang) gets one
    alternative, picked the same way; anything else gets `DEFAULT_ANSWER`.
    """
    schema = request.json_schema
    if schema is not None:
        enum = schema.get("enum")
        if schema.get("type") == "string" and isinstance(enum, list) and enum:
            # choices sent as a string enum (server='openai'): one of them, as a JSON string
            return json.dumps(enum[zlib.crc32(request.prompt.encode()) % len(enum)])
        return _instance_text(json.dumps(schema, sort_keys=True))
    if request.regex is not None:
        alternatives = literal_alternatives(request.regex)
        if alternatives:
            return alternatives[zlib.crc32(request.prompt.encode()) % len(alternatives)]
    return DEFAULT_ANSWER


@lru_cache(maxsize=256)
def _instance_text(schema_text: str) -> str:
    return json.dumps(generate_instance(json.loads(schema_text)))


class _PrefixCache:
    """A token trie: how long a prefix of each prompt was already seen (cleared when large)."""

    def __init__(self) -> None:
        self._root: dict[str, Any] = {}
        self._nodes = 0

    def lookup_and_insert(self, tokens: list[str]) -> int:
        node = self._root
        matched = 0
        for token in tokens:
            child = node.get(token)
            if child is None:
                break
            node = child
            matched += 1
        for token in tokens[matched:]:
            child = {}
            node[token] = child
            node = child
            self._nodes += 1
        if self._nodes > _CACHE_NODE_LIMIT:
            self.clear()
        return matched

    def clear(self) -> None:
        self._root = {}
        self._nodes = 0


class _InjectedDrop(Exception):
    """Raised mid-response so uvicorn closes the connection without a complete answer."""


class _DroppedResponse(Response):
    """Starts a 200 answer, sends part of the body, then fails so the connection drops."""

    def __init__(self) -> None:
        super().__init__(status_code=200)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"text": "', "more_body": True})
        raise _InjectedDrop("test double dropped the connection (injected fault)")


class _BadRequest(Exception):
    """A request SGLang would refuse with HTTP 400."""


class _DoubleState:
    """The test double's mutable state; lives on the server's event loop."""

    def __init__(self, config: SGLangTestServerConfig):
        self.config = config
        self.responder: Responder = config.responder or default_responder
        self.healthy = True
        self.stats = ServerStats()
        self.cache = _PrefixCache()
        self.running = 0
        self.waiting = 0
        self.latency_sum = 0.0
        self._slots: asyncio.Semaphore | None = None
        self._stopping: asyncio.Event | None = None
        self._admission: asyncio.Lock | None = None
        self.set_faults(config.faults)

    def set_faults(self, plan: FaultPlan) -> None:
        self.faults = plan
        self._rng = random.Random(plan.seed)
        self._sequence = list(plan.sequence)

    def draw_fault(self) -> str | None:
        if self._sequence:
            return self._sequence.pop(0)
        if not self.faults.rates:
            return None
        draw = self._rng.random()
        for kind, rate in self.faults.rates.items():
            if draw < rate:
                return kind
            draw -= rate
        return None

    @property
    def slots(self) -> asyncio.Semaphore:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.config.max_running_requests)
        return self._slots

    @property
    def admission(self) -> asyncio.Lock:
        if self._admission is None:
            self._admission = asyncio.Lock()
        return self._admission

    @property
    def stopping(self) -> asyncio.Event:
        if self._stopping is None:
            self._stopping = asyncio.Event()
        return self._stopping


class SGLangTestServer:
    """An SGLang-compatible HTTP test double (no model) on 127.0.0.1 with an ephemeral port.

    Use it as a context manager, or call `start()` and `stop()` (e.g. from a pytest fixture).
    `in_subprocess=True` runs it in its own process (its own interpreter lock: what a throughput
    benchmark needs); the responder must then be a module-level function.
    """

    def __init__(
        self,
        config: SGLangTestServerConfig | None = None,
        *,
        in_subprocess: bool = False,
        **overrides: Any,
    ):
        base = config or SGLangTestServerConfig()
        self.config = dataclasses.replace(base, **overrides) if overrides else base
        self.in_subprocess = in_subprocess
        self.port = 0
        self._state: _DoubleState | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._process: Any = None

    # ----------------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        """Base URL of the running server, e.g. `http://127.0.0.1:41234`."""
        if not self.port:
            raise RuntimeError("SGLangTestServer is not running; call start() first")
        return f"http://{self.config.host}:{self.port}"

    def start(self) -> SGLangTestServer:
        """Start serving and return once the server accepts connections."""
        if self.port:
            return self
        if self.in_subprocess:
            self._start_process()
        else:
            self._start_thread()
        return self

    def stop(self) -> None:
        """Stop serving: wake any hung requests, shut uvicorn down, and join it."""
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        if self._server is not None and self._state is not None:
            loop = getattr(self, "_loop", None)
            if loop is not None and not loop.is_closed():
                try:
                    loop.call_soon_threadsafe(self._state.stopping.set)
                except RuntimeError:
                    pass
            self._server.should_exit = True
            if self._thread is not None:
                self._thread.join(timeout=15)
            self._server = None
            self._thread = None
        self.port = 0

    def __enter__(self) -> SGLangTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _start_thread(self) -> None:
        sock = _bind(self.config.host, self.config.port)
        self.port = sock.getsockname()[1]
        self._state = _DoubleState(self.config)
        app = build_app(self._state, on_startup=self._remember_loop)
        self._server = uvicorn.Server(_uvicorn_config(app, self.config))
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [sock]},
            name="sglang-test-double",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("SGLangTestServer did not start within 15 s")
            time.sleep(0.005)

    def _remember_loop(self) -> None:
        self._loop = asyncio.get_running_loop()

    def _start_process(self) -> None:
        port_file = Path(tempfile.mkdtemp(prefix="sglang-test-double-")) / "port"
        root = str(Path(__file__).resolve().parents[1])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        argv = [sys.executable, "-m", "resources.sglang_test_server"]
        argv += ["--config-json", config_to_json(self.config), "--port-file", str(port_file)]
        self._process = subprocess.Popen(argv, env=env, cwd=root)
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self._process.kill()
                self._process = None
                raise RuntimeError("SGLangTestServer subprocess did not start within 30 s")
            time.sleep(0.02)
        self.port = int(port_file.read_text())
        deadline = time.monotonic() + 15
        while True:
            try:
                httpx.get(self.url + "/health", timeout=1.0)
                return
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise RuntimeError("SGLangTestServer subprocess does not answer") from None
                time.sleep(0.05)

    # ----------------------------------------------------------------- control and counters

    def _local_state(self) -> _DoubleState:
        if self._state is None:
            raise RuntimeError(
                "this control needs an in-thread SGLangTestServer (in_subprocess=False), started"
            )
        return self._state

    def set_faults(self, plan: FaultPlan) -> None:
        """Replace the fault plan (restarts its sequence and RNG)."""
        self._local_state().set_faults(plan)

    def set_responder(self, responder: Responder | None) -> None:
        """Replace the responder (`None` restores `default_responder`)."""
        self._local_state().responder = responder or default_responder

    def set_healthy(self, healthy: bool) -> None:
        """Make `/health` answer 200 (healthy) or 503 (as SGLang does while starting)."""
        self._local_state().healthy = healthy

    def reset_stats(self) -> None:
        """Zero the counters and forget the prefix cache."""
        state = self._local_state()
        state.stats = ServerStats()
        state.cache.clear()

    def stats(self) -> ServerStats:
        """A snapshot of the counters, read over HTTP so it works for a subprocess too."""
        headers = {"Authorization": f"Bearer {self.config.api_key}"} if self.config.api_key else {}
        body = httpx.get(self.url + "/test_double/stats", headers=headers, timeout=10).json()
        body["status_counts"] = {int(k): v for k, v in body["status_counts"].items()}
        return ServerStats(**body)


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(4096)
    sock.setblocking(False)
    return sock


def _uvicorn_config(app: Starlette, config: SGLangTestServerConfig) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        log_config=None,
        log_level="critical",
        access_log=False,
        backlog=4096,
        timeout_keep_alive=30,
        timeout_graceful_shutdown=2,
    )


def config_to_json(config: SGLangTestServerConfig) -> str:
    """Encode a config as JSON for a subprocess; the responder travels as `module:name`."""
    data = dataclasses.asdict(config)
    data["faults"] = {**dataclasses.asdict(config.faults), "sequence": list(config.faults.sequence)}
    responder = config.responder
    if responder is not None:
        name = f"{responder.__module__}:{responder.__qualname__}"
        if "<" in name:
            raise ValueError(
                f"a subprocess SGLangTestServer needs a module-level responder function, not {name}"
            )
        data["responder"] = name
    return json.dumps(data)


def config_from_json(text: str) -> SGLangTestServerConfig:
    """Decode `config_to_json`'s output, importing the responder by name."""
    data = json.loads(text)
    data["faults"] = FaultPlan(**data["faults"])
    if data.get("responder"):
        module_name, _, qualname = data["responder"].partition(":")
        target: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            target = getattr(target, part)
        data["responder"] = target
    return SGLangTestServerConfig(**data)


# --------------------------------------------------------------------------- the app


def _native_error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": {"message": message}}, status_code=status)


def _openai_error(message: str, status: int) -> JSONResponse:
    kinds = {400: "BadRequestError", 429: "RateLimitError", 503: "ServiceUnavailableError"}
    return JSONResponse(
        {
            "object": "error",
            "message": message,
            "type": kinds.get(status, "InternalServerError"),
            "param": None,
            "code": status,
        },
        status_code=status,
    )


def build_app(state: _DoubleState, on_startup: Callable[[], None] | None = None) -> Starlette:
    """Build the test double's Starlette app around its state."""
    config = state.config

    def denied(request: Request) -> Response | None:
        if config.api_key is None:
            return None
        if request.headers.get("authorization") != f"Bearer {config.api_key}":
            return JSONResponse({"error": "Unauthorized"}, status_code=401)
        return None

    async def health(request: Request) -> Response:
        return Response(status_code=200 if state.healthy else 503)

    async def model_info(request: Request) -> Response:
        if (refusal := denied(request)) is not None:
            return refusal
        return JSONResponse(
            {
                "model_path": config.model,
                "tokenizer_path": config.model,
                "is_generation": True,
                "preferred_sampling_params": None,
                "weight_version": "default",
                "test_double": True,
            }
        )

    async def server_info(request: Request) -> Response:
        if (refusal := denied(request)) is not None:
            return refusal
        return JSONResponse(
            {
                "model_path": config.model,
                "served_model_name": config.model,
                "max_running_requests": config.max_running_requests,
                "max_queued_requests": config.max_queued_requests,
                "enable_metrics": True,
                "enable_cache_report": config.enable_cache_report,
                "grammar_backend": "xgrammar",
                "schedule_policy": "lpm",
                "internal_states": [{"max_running_requests": config.max_running_requests}],
                "version": "sglang-test-double",
                "test_double": True,
            }
        )

    async def models(request: Request) -> Response:
        if (refusal := denied(request)) is not None:
            return refusal
        return JSONResponse(
            {
                "object": "list",
                "data": [
                    {
                        "id": config.model,
                        "object": "model",
                        "owned_by": "sglang",
                        "root": config.model,
                    }
                ],
            }
        )

    async def metrics(request: Request) -> Response:
        stats = state.stats
        label = f'{{model_name="{config.model}"}}'
        hit_rate = stats.cached_tokens / stats.prompt_tokens if stats.prompt_tokens else 0.0
        lines = [
            "# SGLang-compatible test double: these counters come from no model.",
            ("sglang:prompt_tokens_total", "counter", stats.prompt_tokens),
            ("sglang:generation_tokens_total", "counter", stats.completion_tokens),
            ("sglang:cached_tokens_total", "counter", stats.cached_tokens),
            ("sglang:num_requests_total", "counter", stats.prompts_received),
            ("sglang:num_running_reqs", "gauge", state.running),
            ("sglang:num_queue_reqs", "gauge", state.waiting),
            ("sglang:cache_hit_rate", "gauge", hit_rate),
            ("sglang:e2e_request_latency_seconds_sum", "counter", state.latency_sum),
            ("sglang:e2e_request_latency_seconds_count", "counter", stats.responses_ok),
        ]
        out = []
        for line in lines:
            if isinstance(line, str):
                out.append(line)
                continue
            name, kind, value = line
            out += [f"# TYPE {name} {kind}", f"{name}{label} {float(value)}"]
        return PlainTextResponse("\n".join(out) + "\n")

    async def stats_route(request: Request) -> Response:
        if (refusal := denied(request)) is not None:
            return refusal
        return JSONResponse(dataclasses.asdict(state.stats))

    async def flush_cache(request: Request) -> Response:
        state.cache.clear()
        return PlainTextResponse("Cache flushed.\n")

    async def generate(request: Request) -> Response:
        return await _serve_generation(state, request, "native", denied)

    async def chat(request: Request) -> Response:
        return await _serve_generation(state, request, "openai", denied)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if on_startup is not None:
            on_startup()
        yield

    async def props(request: Request) -> Response:
        if (refusal := denied(request)) is not None:
            return refusal
        return JSONResponse({"total_slots": config.max_running_requests, "test_double": True})

    common = [
        Route("/health", health),
        Route("/v1/models", models),
        Route("/metrics", metrics),
        Route("/test_double/stats", stats_route),
        Route("/v1/chat/completions", chat, methods=["POST"]),
    ]
    if config.flavour == "openai":
        flavoured = [Route("/props", props)]
    else:
        flavoured = [
            Route("/health_generate", health),
            Route("/model_info", model_info),
            Route("/get_model_info", model_info),
            Route("/server_info", server_info),
            Route("/get_server_info", server_info),
            Route("/flush_cache", flush_cache, methods=["GET", "POST"]),
            Route("/generate", generate, methods=["POST", "PUT"]),
        ]
    return Starlette(
        routes=[r for r in common + flavoured if r.path not in config.missing_routes],
        lifespan=lifespan,
    )


def _parse_native(body: Any) -> list[GenerationRequest]:
    if not isinstance(body, dict):
        raise _BadRequest("the request body must be a JSON object")
    text = body.get("text")
    if text is None:
        raise _BadRequest("Either text, input_ids or input_embeds should be provided.")
    texts = [text] if isinstance(text, str) else text
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts) or not texts:
        raise _BadRequest("text must be a string or a non-empty list of strings")
    raw_params = body.get("sampling_params") or {}
    params = raw_params if isinstance(raw_params, list) else [raw_params] * len(texts)
    rids = body.get("rid")
    rid_list = rids if isinstance(rids, list) else [rids] * len(texts)
    if len(params) != len(texts) or len(rid_list) != len(texts):
        raise _BadRequest("sampling_params and rid lists must match the length of text")
    out = []
    for prompt, sp, rid in zip(texts, params, rid_list, strict=True):
        if not isinstance(sp, dict):
            raise _BadRequest("sampling_params must be an object")
        unknown = sorted(set(sp) - SAMPLING_PARAMS)
        if unknown:
            raise _BadRequest(
                f"SamplingParams.__init__() got an unexpected keyword argument '{unknown[0]}'"
            )
        schema_text = sp.get("json_schema")
        schema = None
        if schema_text is not None:
            if not isinstance(schema_text, str):
                raise _BadRequest("json_schema must be a JSON string, not an object")
            try:
                schema = json.loads(schema_text)
            except ValueError as exc:
                raise _BadRequest(f"json_schema is not valid JSON: {exc}") from None
        out.append(
            _request(
                prompt,
                sp.get("max_new_tokens", 128),
                "native",
                rid,
                sp.get("temperature", 1.0),
                schema,
                sp.get("regex"),
                sp.get("ebnf"),
            )
        )
    return out


_SGLANG_CHAT_EXTRAS = ("rid", "regex", "ebnf")


def _parse_openai(body: Any, flavour: str = "sglang") -> list[GenerationRequest]:
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        raise _BadRequest("the request body must be an object with a 'messages' list")
    if flavour == "openai":
        extras = [key for key in _SGLANG_CHAT_EXTRAS if key in body]
        if extras:
            raise _BadRequest(f"Unrecognized request argument supplied: {extras[0]}")
    contents = []
    for message in body["messages"]:
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, str):
            raise _BadRequest("each message needs a string 'content'")
        contents.append(content)
    schema = None
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        spec = response_format.get("json_schema") or {}
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise _BadRequest("response_format.json_schema.schema must be an object")
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or 128
    return [
        _request(
            "\n".join(contents),
            max_tokens,
            "openai",
            body.get("rid"),
            body.get("temperature", 1.0),
            schema,
            body.get("regex"),
            body.get("ebnf"),
        )
    ]


def _request(
    prompt: str,
    max_new_tokens: Any,
    api: str,
    rid: Any,
    temperature: Any,
    schema: Any,
    regex: Any,
    ebnf: Any,
) -> GenerationRequest:
    if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise _BadRequest(f"max_new_tokens must be a non-negative integer, got {max_new_tokens!r}")
    if not isinstance(temperature, int | float) or temperature < 0:
        raise _BadRequest(f"temperature must be non-negative, got {temperature!r}")
    if sum(c is not None for c in (schema, regex, ebnf)) > 1:
        raise _BadRequest("Only one of regex, json_schema, or ebnf can be set.")
    return GenerationRequest(
        prompt=prompt, max_new_tokens=max_new_tokens, api=api,
        rid=None if rid is None else str(rid), temperature=float(temperature),
        json_schema=schema, regex=regex, ebnf=ebnf,
    )  # fmt: skip


async def _serve_generation(
    state: _DoubleState,
    request: Request,
    api: str,
    denied: Callable[[Request], Response | None],
) -> Response:
    error = _native_error if api == "native" else _openai_error
    stats = state.stats
    if (refusal := denied(request)) is not None:
        _count_status(stats, 401)
        return refusal
    stats.requests_received += 1
    try:
        body = json.loads(await request.body())
        prompts = (
            _parse_native(body) if api == "native" else _parse_openai(body, state.config.flavour)
        )
    except ValueError as exc:
        _count_status(stats, 400)
        return error(f"the request body is not valid JSON: {exc}", 400)
    except _BadRequest as exc:
        _count_status(stats, 400)
        return error(str(exc), 400)
    stats.prompts_received += len(prompts)

    fault = state.draw_fault()
    if fault is not None:
        stats.faults[fault] = stats.faults.get(fault, 0) + 1
    if fault in ("http_500", "http_503", "http_429"):
        status = int(fault[-3:])
        _count_status(stats, status)
        response = error(f"injected fault: HTTP {status} from the SGLang test double", status)
        if state.faults.retry_after_s is not None and status in (429, 503):
            response.headers["Retry-After"] = f"{state.faults.retry_after_s:g}"
        return response
    if fault == "hang":
        try:
            await asyncio.wait_for(state.stopping.wait(), timeout=state.faults.hang_s)
        except TimeoutError:
            pass
        return _DroppedResponse()
    if fault == "drop":
        return _DroppedResponse()

    config = state.config
    capacity = config.max_running_requests + config.max_queued_requests
    if state.running + state.waiting + len(prompts) > capacity:
        _count_status(stats, 503)
        return error("The request queue is full.", 503)

    started = time.perf_counter()
    held = await _acquire_slots(state, len(prompts))
    try:
        # The answer and its response body are built while the prompts hold their slots, as
        # a model computes while it runs: the slot time is what the latency model says.
        running_since = time.perf_counter()
        answers = []
        for prompt in prompts:
            tokens = split_tokens(prompt.prompt)
            cached = state.cache.lookup_and_insert(tokens)
            try:
                answers.append((prompt, len(tokens), cached, _answer(state, prompt, fault)))
            except Exception as exc:  # a scripted responder failed: say so, as a server error
                _count_status(stats, 500)
                return error(f"test double responder failed: {type(exc).__name__}: {exc}", 500)
        longest = max(a[3][1] for a in answers)
        delay = config.request_latency_s + config.token_latency_s * longest
        latency = max(delay, time.perf_counter() - running_since) + (running_since - started)
        items = []
        for prompt, prompt_tokens, cached, (text, completion_tokens, finish) in answers:
            items.append(
                _native_item(
                    prompt, text, prompt_tokens, completion_tokens, cached, finish, latency
                )
                if api == "native"
                else _openai_body(
                    config, prompt, text, prompt_tokens, completion_tokens, cached, finish
                )
            )
        batch = api == "native" and isinstance(body.get("text"), list)
        response = JSONResponse(items if batch else items[0])
        remaining = delay - (time.perf_counter() - running_since)
        if remaining > 0:
            await asyncio.sleep(remaining)
    finally:
        _release_slots(state, held)

    for prompt, prompt_tokens, cached, (_, completion_tokens, _) in answers:
        stats.prompt_tokens += prompt_tokens
        stats.completion_tokens += completion_tokens
        stats.cached_tokens += cached
        state.latency_sum += latency
        stats.responses_ok += 1
        if prompt.rid is not None:
            stats.answered_rids.append(prompt.rid)
    _count_status(stats, 200)
    return response


def _count_status(stats: ServerStats, status: int) -> None:
    stats.status_counts[status] = stats.status_counts.get(status, 0) + 1


def _answer(
    state: _DoubleState, prompt: GenerationRequest, fault: str | None
) -> tuple[str, int, str]:
    raw = state.responder(prompt)
    answer = raw if isinstance(raw, ScriptedAnswer) else ScriptedAnswer(text=str(raw))
    text, finish = answer.text, answer.finish_reason
    if fault == "invalid_json":
        text, finish = "{'answer': not JSON", "stop"
    if fault == "truncate":
        tokens = count_tokens(text)
        text, _ = truncate_to_tokens(text, max(0, min(prompt.max_new_tokens, tokens) // 2))
        finish = "length"
    text, cut = truncate_to_tokens(text, prompt.max_new_tokens)
    if cut:
        finish = "length"
    return text, count_tokens(text), finish


async def _acquire_slots(state: _DoubleState, count: int) -> int:
    """Wait until `count` prompts may run (a batch is admitted whole); return slots held."""
    count = min(count, state.config.max_running_requests)
    acquired = 0
    state.waiting += count
    if state.running + state.waiting > state.stats.max_in_flight_observed:
        state.stats.max_in_flight_observed = state.running + state.waiting
    try:
        async with state.admission:
            while acquired < count:
                await state.slots.acquire()
                acquired += 1
                state.waiting -= 1
                state.running += 1
    except BaseException:
        state.waiting -= count - acquired
        _release_slots(state, acquired)
        raise
    if state.running > state.stats.max_running_observed:
        state.stats.max_running_observed = state.running
    return count


def _release_slots(state: _DoubleState, count: int) -> None:
    for _ in range(count):
        state.running -= 1
        state.slots.release()


def _finish_reason(finish: str, completion_tokens: int) -> dict[str, Any]:
    if finish == "length":
        return {"type": "length", "length": completion_tokens}
    return {"type": finish, "matched": None}


def _native_item(
    prompt: GenerationRequest,
    text: str,
    prompt_tokens: int,
    completion_tokens: int,
    cached: int,
    finish: str,
    latency: float,
) -> dict[str, Any]:
    return {
        "text": text,
        "meta_info": {
            "id": prompt.rid or f"test-double-{zlib.crc32(prompt.prompt.encode())}",
            "finish_reason": _finish_reason(finish, completion_tokens),
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "cached_tokens": cached,
            "e2e_latency": latency,
        },
    }


def _openai_body(
    config: SGLangTestServerConfig,
    prompt: GenerationRequest,
    text: str,
    prompt_tokens: int,
    completion_tokens: int,
    cached: int,
    finish: str,
) -> dict[str, Any]:
    details = {"cached_tokens": cached} if config.enable_cache_report else None
    return {
        "id": f"chatcmpl-{prompt.rid or zlib.crc32(prompt.prompt.encode())}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": config.model,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": text,
                    "reasoning_content": None,
                    "tool_calls": None,
                },
                "logprobs": None,
                "finish_reason": finish,
                "matched_stop": None,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": details,
        },
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the test double in the foreground: `python -m resources.sglang_test_server`."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, default=30000)
    parser.add_argument("--model", default="sglang-test-double")
    parser.add_argument("--max-running-requests", type=int, default=64)
    parser.add_argument("--request-latency-s", type=float, default=0.04)
    parser.add_argument("--token-latency-s", type=float, default=0.0)
    parser.add_argument("--config-json", help="a whole config (overrides the options above)")
    parser.add_argument("--port-file", help="write the bound port to this file once listening")
    args = parser.parse_args(argv)
    if args.config_json:
        config = config_from_json(args.config_json)
    else:
        config = SGLangTestServerConfig(
            model=args.model,
            max_running_requests=args.max_running_requests,
            request_latency_s=args.request_latency_s,
            token_latency_s=args.token_latency_s,
            port=args.port,
        )
    gc.set_threshold(100_000, 50, 1000)  # a serving process: fewer collection pauses
    sock = _bind(config.host, config.port)
    port = sock.getsockname()[1]
    if args.port_file:
        Path(args.port_file).write_text(str(port))
    else:
        url = f"http://{config.host}:{port}"
        print(f"SGLang-compatible TEST DOUBLE (no model) on {url}", flush=True)
    app = build_app(_DoubleState(config))
    uvicorn.Server(_uvicorn_config(app, config)).run(sockets=[sock])


if __name__ == "__main__":
    main()

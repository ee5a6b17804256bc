"""Which model resource backs each model resource key: an SGLang server, or the offline model.

One lookup, as Dagster's project examples pick a real or local client per environment:
`MARIGOLD_SGLANG_URL` set (one URL, or several separated by commas) binds `SGLangResource`;
unset binds `OfflineModel`, which runs templates deterministically without any model server.
The URL, model and API key are the deployment's: `build_defs` binds these resources with
`fixed_by_deployment`, so no run config can change them.
The deployment's prices (`MARIGOLD_SGLANG_PRICE_*`, see `resources.pricing`) are bound per
resource key here, at definitions load, not as resource config a launch could override; the
offline model is bound at $0.00.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit, urlunsplit

from dagster import ConfigurableResource, EnvVar

from resources.offline_model import OfflineModel
from resources.pricing import FREE, bind_prices, prices_from_environment
from resources.sglang import SGLangResource

SGLANG_URL_ENV = "MARIGOLD_SGLANG_URL"
SGLANG_MODEL_ENV = "MARIGOLD_SGLANG_MODEL"
SGLANG_API_KEY_ENV = "MARIGOLD_SGLANG_API_KEY"
SERVER_KIND_ENV = "MARIGOLD_MODEL_SERVER_KIND"  # sglang (default) | openai: vLLM, llama.cpp, ...
SGLANG_BATCH_SIZE_ENV = "MARIGOLD_SGLANG_BATCH_SIZE"

DEFAULT_BATCH_SIZE = 16
"""Prompts per /generate request the jobs send. Measured against the test server (64 running,
40 ms each: bench/bench_scale.py, bench/bench_sglang_throughput.py): one prompt per request
reached about a third of capacity, the client's per-request overhead being the bottleneck;
16 per request reached 0.87-0.96 of it. The in-flight limit stays the resource's default: the
server's max_running_requests plus queue_headroom waiting, so a freed slot is refilled at once.
An OpenAI-compatible server has no list form: one prompt per request there."""


def model_backend(environ: Mapping[str, str] | None = None) -> str:
    """What `model_resources` binds in this environment, as a run tag: `offline` or
    `sglang <url>[,<url>...]` (URLs without any user or password)."""
    environ = os.environ if environ is None else environ
    urls = [u.strip() for u in environ.get(SGLANG_URL_ENV, "").split(",") if u.strip()]
    if not urls:
        return "offline"
    return "sglang " + ",".join(_without_credentials(url) for url in urls)


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def model_resources(
    keys: Iterable[str], environ: Mapping[str, str] | None = None
) -> dict[str, ConfigurableResource]:
    """A model resource for each resource key, chosen by the environment."""
    environ = os.environ if environ is None else environ
    url = environ.get(SGLANG_URL_ENV, "").strip()
    bound: dict[str, ConfigurableResource] = {}
    server = environ.get(SERVER_KIND_ENV, "").strip() or "sglang"
    batch_size = int(environ.get(SGLANG_BATCH_SIZE_ENV) or DEFAULT_BATCH_SIZE)
    prices = prices_from_environment(environ) if url else FREE
    for key in sorted(set(keys)):
        bind_prices(key, prices)
        if url:
            bound[key] = SGLangResource(
                base_url=url,
                model=environ.get(SGLANG_MODEL_ENV) or None,
                api_key=EnvVar(SGLANG_API_KEY_ENV) if environ.get(SGLANG_API_KEY_ENV) else None,
                server=server,  # type: ignore[arg-type]
                batch_size=batch_size if server == "sglang" else 1,
            )
        else:
            bound[key] = OfflineModel()
    return bound

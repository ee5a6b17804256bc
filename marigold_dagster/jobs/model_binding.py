"""Which model resource backs each model resource key: an SGLang server, or the offline model.

One lookup, as Dagster's project examples pick a real or local client per environment:
`MARIGOLD_SGLANG_URL` set (one URL, or several separated by commas) binds `SGLangResource`;
unset binds `OfflineModel`, which runs templates deterministically without any model server.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from dagster import ConfigurableResource, EnvVar

from resources.offline_model import OfflineModel
from resources.sglang import SGLangResource

SGLANG_URL_ENV = "MARIGOLD_SGLANG_URL"
SGLANG_MODEL_ENV = "MARIGOLD_SGLANG_MODEL"
SGLANG_API_KEY_ENV = "MARIGOLD_SGLANG_API_KEY"
SGLANG_BATCH_SIZE_ENV = "MARIGOLD_SGLANG_BATCH_SIZE"

DEFAULT_BATCH_SIZE = 16
"""Prompts per /generate request the jobs send. Measured against the test server (64 running,
40 ms each: bench/bench_scale.py, bench/bench_sglang_throughput.py): one prompt per request
reached about a third of capacity, the client's per-request overhead being the bottleneck;
16 per request reached 0.87-0.96 of it. The in-flight limit stays the resource's default: the
server's max_running_requests plus queue_headroom waiting, so a freed slot is refilled at once."""


def model_resources(
    keys: Iterable[str], environ: Mapping[str, str] | None = None
) -> dict[str, ConfigurableResource]:
    """A model resource for each resource key, chosen by the environment."""
    environ = os.environ if environ is None else environ
    url = environ.get(SGLANG_URL_ENV, "").strip()
    bound: dict[str, ConfigurableResource] = {}
    for key in sorted(set(keys)):
        if url:
            bound[key] = SGLangResource(
                base_url=url,
                model=environ.get(SGLANG_MODEL_ENV) or None,
                api_key=EnvVar(SGLANG_API_KEY_ENV) if environ.get(SGLANG_API_KEY_ENV) else None,
                batch_size=int(environ.get(SGLANG_BATCH_SIZE_ENV) or DEFAULT_BATCH_SIZE),
            )
        else:
            bound[key] = OfflineModel()
    return bound

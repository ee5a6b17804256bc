"""Fixtures for the model resources: a live SGLang test double and set-up resources."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import dagster as dg
import pytest

from resources.sglang import SGLangResource
from resources.sglang_test_server import SGLangTestServer

MODEL = "test-double/model"
API_KEY = "sk-test-9f3a7c2e1b"  # a made-up key; tests check it never reaches logs


@pytest.fixture
def server() -> Iterator[SGLangTestServer]:
    """A running SGLang test double (in a thread) requiring `API_KEY`."""
    with SGLangTestServer(model=MODEL, api_key=API_KEY, max_running_requests=8) as running:
        yield running


OpenModel = Callable[..., AbstractContextManager[SGLangResource]]


@pytest.fixture
def open_model(server: SGLangTestServer) -> OpenModel:
    """Set up an `SGLangResource` against `server` (overridable config), torn down after."""

    @contextmanager
    def _open(**overrides: Any) -> Iterator[SGLangResource]:
        config: dict[str, Any] = {
            "base_url": server.url,
            "model": MODEL,
            "api_key": API_KEY,
            "retry_backoff_base_s": 0.01,
            "retry_backoff_max_s": 0.05,
            "request_timeout_s": 5.0,
        }
        config.update(overrides)
        resource = SGLangResource(**config)
        with resource.yield_for_execution(dg.build_init_resource_context()) as model:
            yield model

    return _open

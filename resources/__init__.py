"""Dagster resources for models: an SGLang server, the offline rules, and the SGLang test double.

`SGLangTestServer` and its helpers import Starlette and uvicorn (the `dev` extra), so they are
loaded only when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from resources.model_errors import ModelAnswerError, ModelServerCheckError, ModelServerError
from resources.model_usage import ModelUsage
from resources.offline_model import OfflineModel
from resources.sglang import SGLangResource
from resources.sglang_launch import SGLangNotInstalledError, build_sglang_command, launch_sglang

if TYPE_CHECKING:
    from resources.sglang_test_server import FaultPlan, SGLangTestServer, SGLangTestServerConfig

__all__ = [
    "FaultPlan",
    "ModelAnswerError",
    "ModelServerCheckError",
    "ModelServerError",
    "ModelUsage",
    "OfflineModel",
    "SGLangNotInstalledError",
    "SGLangResource",
    "SGLangTestServer",
    "SGLangTestServerConfig",
    "build_sglang_command",
    "launch_sglang",
]

_TEST_DOUBLE = {"FaultPlan", "SGLangTestServer", "SGLangTestServerConfig"}


def __getattr__(name: str) -> Any:
    if name in _TEST_DOUBLE:
        from resources import sglang_test_server

        return getattr(sglang_test_server, name)
    raise AttributeError(f"module 'resources' has no attribute {name!r}")

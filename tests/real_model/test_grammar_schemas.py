"""Every schema the platform sends compiles in llama.cpp's grammar converter, completely.

Each schema goes to the running llama-server as a `response_format` (one token to generate):
the request must not be refused (HTTP 400: the converter failed) or fail (HTTP 500), and the
server must not log that the conversion was incomplete (an unsupported `pattern` is silently
widened to any string). `scripts/check_schemas_xgrammar.py` checks the same schemas with
xgrammar, SGLang's default grammar backend.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from resources.llama_server import LlamaServer
from tests.real_model.sent_schemas import platform_schemas

pytestmark = [pytest.mark.real_model, pytest.mark.slow]

SCHEMAS = platform_schemas()
INCOMPLETE = "JSON schema conversion was incomplete"


def test_the_platform_sends_schemas_of_every_kind() -> None:
    wheres = " ".join(where for where, _ in SCHEMAS)
    for kind in ("(fragment)", "llm.extract answer", "llm.classify answer", "decide.model"):
        assert kind in wheres, f"no {kind} schema collected"


@pytest.mark.parametrize(("where", "schema"), SCHEMAS, ids=[w for w, _ in SCHEMAS])
def test_llama_cpp_compiles_the_schema(
    llama_server: LlamaServer, where: str, schema: dict[str, Any]
) -> None:
    assert llama_server.log_path is not None
    seen = len(llama_server.log_path.read_bytes())
    response = httpx.post(
        llama_server.url + "/v1/chat/completions",
        json={
            "model": llama_server.alias,
            "messages": [{"role": "user", "content": "Answer in JSON."}],
            "max_tokens": 1,
            "temperature": 0,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": schema, "strict": True},
            },
        },
        timeout=120,
    )
    assert response.status_code == 200, f"{where}: HTTP {response.status_code} {response.text}"
    new_log = llama_server.log_path.read_bytes()[seen:].decode(errors="replace")
    assert INCOMPLETE not in new_log, f"{where}: {new_log[-500:]}"

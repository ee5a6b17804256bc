"""Launching SGLang: the argv, the missing-extra message, and waiting for /health."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from resources import sglang_launch
from resources.sglang_launch import (
    SGLangLaunchError,
    SGLangNotInstalledError,
    build_sglang_command,
    redact_command,
    wait_for_health,
)
from resources.sglang_test_server import SGLangTestServer


def test_command_is_an_argv_list_with_the_platform_flags() -> None:
    argv = build_sglang_command(
        "org/model", host="0.0.0.0", port=31000, config_file="/k.yaml", served_model_name="served",
        max_running_requests=64, extra_args=["--tp-size", "2"], executable=["sglang", "serve"],
    )  # fmt: skip
    assert argv[:2] == ["sglang", "serve"]
    pairs = dict(zip(argv[2::], argv[3::], strict=False))
    assert pairs["--model-path"] == "org/model" and pairs["--port"] == "31000"
    assert pairs["--grammar-backend"] == "xgrammar" and pairs["--schedule-policy"] == "lpm"
    assert pairs["--served-model-name"] == "served" and pairs["--max-running-requests"] == "64"
    for flag in ("--enable-metrics", "--enable-cache-report"):
        assert flag in argv
    assert pairs["--config"] == "/k.yaml" and "--api-key" not in argv
    assert argv[-2:] == ["--tp-size", "2"]
    assert redact_command(["x", "--api-key", "k-1"]) == ["x", "--api-key", "***"]


def test_the_api_key_reaches_sglang_in_an_owner_only_file_not_the_command_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started: list[list[str]] = []
    seen: dict[str, object] = {}

    class Started:
        def __init__(self, argv: list[str], **kwargs: object) -> None:
            started.append(argv)
            config = Path(argv[argv.index("--config") + 1])
            seen["mode"] = stat.S_IMODE(config.stat().st_mode)
            seen["folder_mode"] = stat.S_IMODE(config.parent.stat().st_mode)
            seen["config"] = yaml.safe_load(config.read_text())
            seen["path"] = config

    monkeypatch.setattr(sglang_launch, "require_sglang", lambda: None)
    monkeypatch.setattr(sglang_launch.subprocess, "Popen", Started)
    monkeypatch.setattr(sglang_launch, "_wait_or_stop", lambda *args: None)
    sglang_launch.launch_sglang("org/model", api_key="sk-launch-secret")
    argv = started[0]
    assert all("sk-launch-secret" not in arg for arg in argv) and "--api-key" not in argv
    assert seen["config"] == {"api-key": "sk-launch-secret"}
    assert seen["mode"] == 0o600 and seen["folder_mode"] == 0o700
    assert not Path(str(seen["path"])).exists(), "removed once the server is up"


def test_default_executable_is_sglang_serve_or_the_module() -> None:
    prefix = sglang_launch.sglang_executable()
    assert prefix[-1] == "serve" or prefix[-2:] == ["-m", "sglang.launch_server"]


@pytest.mark.slow
@pytest.mark.skipif(sglang_launch.importlib.util.find_spec("sglang") is not None,
                    reason="sglang is installed here")  # fmt: skip
def test_without_sglang_it_says_to_install_the_serve_extra() -> None:
    with pytest.raises(SGLangNotInstalledError, match=r"marigold-dagster\[serve\]"):
        sglang_launch.launch_sglang("org/model")
    done = subprocess.run(
        [sys.executable, "-m", "resources.sglang_launch", "--model-path", "org/model"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "SGLang is not installed" in done.stderr and "[serve]" in done.stderr


def test_wait_for_health_returns_once_healthy() -> None:
    with SGLangTestServer() as server:
        wait_for_health(server.url, timeout_s=5)


def test_wait_for_health_times_out_with_a_clear_message() -> None:
    with SGLangTestServer() as server:
        server.set_healthy(False)
        with pytest.raises(SGLangLaunchError, match=r"not healthy after 1s.*HTTP 503"):
            wait_for_health(server.url, timeout_s=1)


@pytest.mark.slow
def test_wait_for_health_notices_the_process_exiting() -> None:
    process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    process.wait()
    with pytest.raises(SGLangLaunchError, match="exited with code 3"):
        wait_for_health("http://127.0.0.1:9", timeout_s=5, process=process)

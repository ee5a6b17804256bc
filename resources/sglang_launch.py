"""Launch an SGLang server on a GPU host with the flags this platform relies on.

`sglang` pulls torch and CUDA, so it is the `serve` extra (`pip install
'marigold-dagster[serve]'`), never a core dependency. The command is SGLang's CLI
`sglang serve` (when the `sglang` script sits beside this interpreter or on PATH) or the
equivalent `python -m sglang.launch_server`, always built as an argv list, with:

- `--enable-metrics` (Prometheus `/metrics`), `--enable-cache-report` (cached prompt tokens in
  OpenAI-route usage), `--grammar-backend xgrammar` (JSON schema, regex and EBNF constraints),
  `--schedule-policy lpm` (longest-prefix-match scheduling, so shared prompt prefixes hit the
  cache), and, when a key is given, the key in an owner-only YAML file passed as `--config`
  (SGLang's config file of server flags), never on the command line, where every local user
  could read it in the process list; SGLang then wants `Authorization: Bearer`.

Then it waits for `GET /health` to answer 200. From the command line:

    SGLANG_API_KEY=... python -m resources.sglang_launch --model-path Qwen/Qwen2.5-7B-Instruct

The key is read from an environment variable, written only to that file (mode 0600, in a
0700 folder, removed once the server is healthy), and never printed or logged.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

logger = logging.getLogger(__name__)

SERVE_EXTRA_HINT = "pip install 'marigold-dagster[serve]'"


class SGLangNotInstalledError(RuntimeError):
    """SGLang is not installed in this environment (it is the `serve` extra)."""


class SGLangLaunchError(RuntimeError):
    """The SGLang server exited or did not become healthy in time."""


def require_sglang() -> None:
    """Raise `SGLangNotInstalledError` saying how to install SGLang, if it is missing."""
    if importlib.util.find_spec("sglang") is None:
        raise SGLangNotInstalledError(
            "SGLang is not installed in this Python environment "
            f"({sys.executable}). It is the 'serve' extra, for GPU hosts: {SERVE_EXTRA_HINT}. "
            "Elsewhere, point SGLangResource at a running server or use OfflineModel."
        )


def sglang_executable() -> list[str]:
    """The argv prefix that runs SGLang's server: `sglang serve`, else `python -m ...`."""
    beside = Path(sys.executable).with_name("sglang")
    script = str(beside) if beside.exists() else shutil.which("sglang")
    if script:
        return [script, "serve"]
    return [sys.executable, "-m", "sglang.launch_server"]


def build_sglang_command(
    model_path: str,
    *,
    host: str = "127.0.0.1",
    port: int = 30000,
    config_file: str | None = None,
    served_model_name: str | None = None,
    grammar_backend: str = "xgrammar",
    schedule_policy: str = "lpm",
    max_running_requests: int | None = None,
    extra_args: Sequence[str] = (),
    executable: Sequence[str] | None = None,
) -> list[str]:
    """Build the argv that starts SGLang with the platform's flags (never a shell string).

    Secrets never go into it: `config_file` is a YAML file of further flags (see
    `api_key_config`), passed as `--config`.

    Example:
        >>> build_sglang_command("org/model", port=31000, executable=["sglang", "serve"])[:6]
        ['sglang', 'serve', '--model-path', 'org/model', '--host', '127.0.0.1']
    """
    argv = [*(executable or sglang_executable())]
    argv += ["--model-path", model_path, "--host", host, "--port", str(port)]
    argv += ["--enable-metrics", "--enable-cache-report"]
    argv += ["--grammar-backend", grammar_backend, "--schedule-policy", schedule_policy]
    if served_model_name:
        argv += ["--served-model-name", served_model_name]
    if max_running_requests is not None:
        argv += ["--max-running-requests", str(max_running_requests)]
    if config_file:
        argv += ["--config", config_file]
    argv += list(extra_args)
    return argv


@contextmanager
def api_key_config(api_key: str | None) -> Iterator[str | None]:
    """An owner-only SGLang config file holding `api-key`, removed on exit (None: no key)."""
    if not api_key:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="marigold-sglang-") as folder:  # created 0700
        path = Path(folder) / "api_key.yaml"
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(f"api-key: {json.dumps(api_key)}\n")  # a JSON string is valid YAML
        yield str(path)


def redact_command(argv: Sequence[str]) -> list[str]:
    """Return `argv` with the value after `--api-key` replaced by `***`."""
    out = list(argv)
    for index, arg in enumerate(out[:-1]):
        if arg == "--api-key":
            out[index + 1] = "***"
    return out


def wait_for_health(
    url: str, *, timeout_s: float = 900.0, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Poll `url/health` until it answers 200.

    Raises:
        SGLangLaunchError: the process exited first, or `timeout_s` passed.
    """
    deadline = time.monotonic() + timeout_s
    last = "no answer yet"
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise SGLangLaunchError(
                f"SGLang exited with code {process.returncode} before {url}/health answered; "
                "see its output above"
            )
        try:
            response = httpx.get(url + "/health", timeout=5.0)
            if response.status_code == 200:
                return
            last = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        time.sleep(1.0)
    raise SGLangLaunchError(
        f"SGLang at {url} was not healthy after {timeout_s:.0f}s (last /health: {last}); "
        "loading a large model can take long: raise the timeout"
    )


def launch_sglang(
    model_path: str,
    *,
    host: str = "127.0.0.1",
    port: int = 30000,
    api_key: str | None = None,
    served_model_name: str | None = None,
    max_running_requests: int | None = None,
    extra_args: Sequence[str] = (),
    health_timeout_s: float = 900.0,
) -> subprocess.Popen[bytes]:
    """Start SGLang in its own process group and return once `/health` answers 200.

    Raises:
        SGLangNotInstalledError: `sglang` is missing (install the `serve` extra).
        SGLangLaunchError: it exited or did not become healthy; the process is stopped.
    """
    require_sglang()
    with api_key_config(api_key) as config_file:
        argv = build_sglang_command(
            model_path,
            host=host,
            port=port,
            config_file=config_file,
            served_model_name=served_model_name,
            max_running_requests=max_running_requests,
            extra_args=extra_args,
        )
        logger.info("starting SGLang: %s", " ".join(redact_command(argv)))
        process = subprocess.Popen(argv, start_new_session=True)
        _wait_or_stop(process, host, port, health_timeout_s)
    return process


def _wait_or_stop(
    process: subprocess.Popen[bytes], host: str, port: int, health_timeout_s: float
) -> None:
    probe_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    try:
        wait_for_health(f"http://{probe_host}:{port}", timeout_s=health_timeout_s, process=process)
    except BaseException:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        raise


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: launch SGLang, wait until healthy, then serve until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m resources.sglang_launch",
        description="Launch an SGLang server with the flags Marigold relies on.",
    )
    parser.add_argument("--model-path", required=True, help="Hugging Face id or local path")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=30000)
    parser.add_argument("--served-model-name", default=None)
    parser.add_argument("--max-running-requests", type=int, default=None)
    parser.add_argument(
        "--api-key-env",
        default="SGLANG_API_KEY",
        help="environment variable holding the API key (unset: no key)",
    )
    parser.add_argument("--health-timeout-s", type=float, default=900.0)
    args, extra = parser.parse_known_args(argv)
    try:
        process = launch_sglang(
            args.model_path,
            host=args.host,
            port=args.port,
            api_key=os.environ.get(args.api_key_env) or None,
            served_model_name=args.served_model_name,
            max_running_requests=args.max_running_requests,
            extra_args=extra,
            health_timeout_s=args.health_timeout_s,
        )
    except (SGLangNotInstalledError, SGLangLaunchError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"SGLang is serving {args.model_path} at http://{args.host}:{args.port}", flush=True)
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.terminate()
        return process.wait()


if __name__ == "__main__":
    sys.exit(main())

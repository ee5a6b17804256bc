"""Celery workers for tests: `marigold worker` processes on the machine's RabbitMQ.

Each test run gets its own queue names (a unique `MARIGOLD_CELERY_QUEUE_PREFIX`), so parallel
CI runs on one broker never take each other's steps. Every worker runs in its own process group,
killed as a whole on exit.

    with celery_workers(home, prefix, ["dagster", "worker_model"], count=2) as workers:
        ...  # run a job whose executor is `celery`
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from harness.processes import start_logged

ROOT = Path(__file__).parents[1]
BIN = Path(sys.executable).parent
BROKER = "pyamqp://guest@127.0.0.1:5672//"


def unique_prefix() -> str:
    return f"marigold_test_{uuid.uuid4().hex[:8]}_"


def celery_env(home: Path, prefix: str) -> dict[str, str]:
    """The environment a deployment's launcher and its workers share under Celery."""
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "PYTHONPATH": str(ROOT),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # `celery` beside this python
        "PYTHONUNBUFFERED": "1",
        "MARIGOLD_EXECUTOR": "celery",
        "MARIGOLD_CELERY_BROKER": BROKER,
        "MARIGOLD_CELERY_QUEUE_PREFIX": prefix,
    }
    env.pop("MARIGOLD_SGLANG_URL", None)
    return env


@dataclass
class Worker:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def kill(self, sig: int = signal.SIGKILL) -> None:
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            self.kill(sig)
            try:
                self.process.wait(timeout=grace)
                return
            except subprocess.TimeoutExpired:
                continue

    def pool_pids(self) -> list[int]:
        """The worker's pool processes, which run its steps (Linux /proc).

        The worker's process is `dagster-celery`; its child is Celery's main process, whose
        children are the pool (a step's own helpers, such as log capture, are below those).
        """
        children: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                parent = int(stat.rpartition(")")[2].split()[1])
                children.setdefault(parent, []).append(int(entry.name))
        mains = children.get(self.process.pid, [])
        return [pid for main in mains for pid in children.get(main, [])]

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def kill_on(workers: Sequence[Worker], kill_at: str, hostname: str) -> None:
    """SIGKILL, as a Celery crash trial's `kill_at` says, the worker whose Celery node name is
    `hostname` (`name@host`): the whole worker (`worker_mid_chunk`) or only its step processes."""
    worker = next(w for w in workers if w.name == hostname.partition("@")[0])
    if kill_at == "worker_mid_chunk":
        worker.kill()
        return
    for pid in worker.pool_pids():
        os.kill(pid, signal.SIGKILL)


@contextmanager
def celery_workers(
    home: Path, prefix: str, queues: Sequence[str], count: int = 2, timeout_s: float = 120.0
) -> Iterator[list[Worker]]:
    """Start `count` workers, one task at a time each, on the prefixed `queues`; wait for them."""
    env = celery_env(home, prefix)
    workers: list[Worker] = []
    try:
        for index in range(count):
            name = f"{prefix}w{index}"
            log = home / f"{name}.log"
            command = [str(BIN / "marigold"), "worker", "-n", name, "--concurrency", "1"]
            command += [arg for queue in queues for arg in ("-q", queue)]
            process = start_logged(command, cwd=ROOT, env=env, log=log)
            workers.append(Worker(name, process, log))
        deadline = time.monotonic() + timeout_s
        while not all(" ready." in w.log.read_text(errors="replace") for w in workers):
            for worker in workers:
                if worker.process.poll() is not None:
                    raise RuntimeError(f"worker {worker.name} exited:\n{worker.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError("workers not ready:\n" + "\n".join(w.tail() for w in workers))
            time.sleep(0.5)
        yield workers
    finally:
        for worker in workers:
            worker.stop()

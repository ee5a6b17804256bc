"""Server and worker processes the harnesses start: each in its own process group, its output in
a log file, so stopping it kills everything it started and a failure can be read afterwards."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path


def start_logged(
    command: Sequence[str], *, cwd: Path, env: Mapping[str, str], log: Path
) -> subprocess.Popen[bytes]:
    """Start `command` in a new session (its own process group), stdout and stderr to `log`."""
    with log.open("wb") as sink:
        return subprocess.Popen(
            list(command),
            cwd=cwd,
            env=dict(env),
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

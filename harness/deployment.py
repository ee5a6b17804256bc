"""A real Dagster deployment for tests: dagster-webserver and dagster-daemon on 127.0.0.1.

Both serve the project's `workspace.yaml` against an instance in a temporary DAGSTER_HOME whose
run, event-log and schedule storage is PostgreSQL and whose run queue and pools are the ones
documented in the project's `dagster.yaml`. Each server runs in its own process group, which is
killed on stop (the webserver may ignore SIGTERM). Runs are launched through GraphQL, as the
Launchpad does.

    with DagsterDeployment.start(home, postgres_url) as deployment:
        run_id = deployment.launch_run("contract_review")
        deployment.wait_for_run(run_id)
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from dagster import DagsterInstance

from harness.processes import start_logged

ROOT = Path(__file__).parents[1]
BIN = Path(sys.executable).parent
QUEUE_BEGIN, QUEUE_END = "# --- run queue and pools ---", "# --- end run queue and pools ---"
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}

LAUNCH_RUN = """
mutation LaunchRun($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on RunConfigValidationInvalid { errors { message path reason } }
    ... on PythonError { message stack }
    ... on Error { message }
  }
}
"""

RUN_STATUS = """
query RunStatus($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { runId status startTime endTime }
    ... on Error { message }
  }
}
"""

LOCATIONS = """
query Locations {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError {
          __typename
          ... on RepositoryLocation { name repositories { name jobs { name } } }
          ... on PythonError { message }
        }
      }
    }
  }
}
"""

RUN_EVENTS = """
query RunEvents($runId: ID!) {
  logsForRun(runId: $runId, limit: 5000) {
    __typename
    ... on EventConnection {
      events {
        __typename
        ... on MessageEvent { message level stepKey timestamp }
        ... on ExecutionStepFailureEvent { error { message stack } }
        ... on RunFailureEvent { error { message stack } }
        ... on EngineEvent { error { message stack } }
      }
    }
    ... on Error { message }
  }
}
"""

ASSET_LINEAGE = """
query AssetLineage($assetKey: AssetKeyInput!) {
  assetNodeOrError(assetKey: $assetKey) {
    __typename
    ... on AssetNode { dependencyKeys { path } dependedByKeys { path } }
    ... on Error { message }
  }
}
"""

DAEMON_HEALTH = """
query DaemonHealth {
  instance { daemonHealth { allDaemonStatuses { daemonType healthy required } } }
}
"""


class DeploymentError(AssertionError):
    """The deployment did not do what a test waited for; the message ends with the logs' tail."""


def documented_run_queue_block() -> dict[str, Any]:
    """The run queue and pools block documented (commented out) in the project's dagster.yaml."""
    text = (ROOT / "dagster.yaml").read_text()
    block = text[text.index(QUEUE_BEGIN) + len(QUEUE_BEGIN) : text.index(QUEUE_END)]
    return yaml.safe_load("\n".join(line.removeprefix("# ") for line in block.strip().splitlines()))


def instance_config(postgres_url: str) -> dict[str, Any]:
    """Instance config: PostgreSQL storage plus the documented run queue and pools."""
    return {
        "storage": {"postgres": {"postgres_url": postgres_url}},
        **documented_run_queue_block(),
        "telemetry": {"enabled": False},
        "nux": {"enabled": False},
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class _Server:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()[-lines:]
        except FileNotFoundError:
            return f"(no log at {self.log})"
        return "\n".join(text)

    def stop(self) -> None:
        """Kill this server's whole process group: SIGTERM, then SIGKILL after a grace period."""
        if self.process.poll() is not None:
            return
        for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(timeout=grace)
                return
            except subprocess.TimeoutExpired:
                continue


@dataclass
class DagsterDeployment:
    """A running dagster-webserver + dagster-daemon pair over one DAGSTER_HOME."""

    home: Path
    url: str
    templates_dir: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    servers: list[_Server] = field(default_factory=list)
    _client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=60.0))

    @classmethod
    @contextmanager
    def start(
        cls,
        home: Path,
        postgres_url: str,
        *,
        templates_dir: Path | None = None,
        timeout_s: float = 180.0,
        env: Mapping[str, str] | None = None,
        daemon: bool = True,
    ) -> Iterator[DagsterDeployment]:
        """Write the instance config into `home`, start both servers, wait until they serve.

        `templates_dir` replaces the project's templates/ (through MARIGOLD_TEMPLATES_DIR);
        `env` adds environment variables to both; `daemon=False` starts the webserver only.
        """
        home.mkdir(parents=True, exist_ok=True)
        (home / "dagster.yaml").write_text(yaml.safe_dump(instance_config(postgres_url)))
        port = free_port()
        deployment = cls(
            home=home,
            url=f"http://127.0.0.1:{port}",
            templates_dir=templates_dir,
            extra_env=dict(env or {}),
        )
        workspace = str(ROOT / "workspace.yaml")
        try:
            deployment._spawn(
                "webserver",
                [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port)]
                + ["-w", workspace],
            )
            if daemon:
                deployment._spawn("daemon", [str(BIN / "dagster-daemon"), "run", "-w", workspace])
            deployment.wait_until_ready(timeout_s)
            yield deployment
        finally:
            deployment.stop()

    def _spawn(self, name: str, command: list[str]) -> None:
        env = {
            **os.environ,
            "DAGSTER_HOME": str(self.home),
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("MARIGOLD_SGLANG_URL", None)  # the offline model: no model server needed
        env.pop("MARIGOLD_TEMPLATES_DIR", None)
        if self.templates_dir is not None:
            env["MARIGOLD_TEMPLATES_DIR"] = str(self.templates_dir)
        env.update(self.extra_env)
        log = self.home / f"{name}.log"
        process = start_logged(command, cwd=ROOT, env=env, log=log)
        self.servers.append(_Server(name, process, log))

    def stop(self) -> None:
        for server in reversed(self.servers):
            server.stop()
        self._client.close()

    def logs_tail(self, lines: int = 40) -> str:
        """The last lines of every server's log, for failure messages."""
        parts = [f"--- {s.name} log ({s.log}) ---\n{s.tail(lines)}" for s in self.servers]
        return "\n".join(parts)

    def fail(self, message: str) -> DeploymentError:
        return DeploymentError(f"{message}\n{self.logs_tail()}")

    def _check_alive(self) -> None:
        for server in self.servers:
            if server.process.poll() is not None:
                raise self.fail(
                    f"dagster-{server.name} exited with code {server.process.returncode}"
                )

    def graphql(self, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """POST one GraphQL query to the webserver and return its `data`."""
        response = self._client.post(
            f"{self.url}/graphql", json={"query": query, "variables": dict(variables or {})}
        )
        if response.status_code != 200:
            raise self.fail(f"GraphQL HTTP {response.status_code}: {response.text[:2000]}")
        body = response.json()
        if body.get("errors"):
            raise self.fail(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def wait_until_ready(self, timeout_s: float) -> None:
        """Wait for the workspace to load in the webserver and the daemons to report healthy."""
        deadline = time.monotonic() + timeout_s
        last = "no answer yet"
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                daemons = self._daemons_healthy() if len(self.servers) > 1 else True
                if self._workspace_loaded() and daemons:
                    return
                last = "workspace or daemons not ready"
            except httpx.HTTPError as error:  # not listening yet
                last = f"{type(error).__name__}: {error}"
            time.sleep(1.0)
        raise self.fail(f"deployment not ready after {timeout_s:.0f}s ({last})")

    def _workspace_loaded(self) -> bool:
        data = self.graphql(LOCATIONS)["workspaceOrError"]
        entries = data.get("locationEntries") or []
        if not entries or any(e["loadStatus"] != "LOADED" for e in entries):
            return False
        for entry in entries:
            loaded = entry["locationOrLoadError"]
            if loaded["__typename"] == "PythonError":
                raise self.fail(f"code location {entry['name']} failed: {loaded['message']}")
        return True

    def _daemons_healthy(self) -> bool:
        statuses = self.graphql(DAEMON_HEALTH)["instance"]["daemonHealth"]["allDaemonStatuses"]
        return all(s["healthy"] for s in statuses if s["required"])

    def job_selector(self, job: str) -> dict[str, str]:
        """The selector the Launchpad sends for `job`: code location, repository, job name."""
        entries = self.graphql(LOCATIONS)["workspaceOrError"]["locationEntries"]
        for entry in entries:
            location = entry["locationOrLoadError"]
            for repository in location.get("repositories", []):
                if any(j["name"] == job for j in repository["jobs"]):
                    return {
                        "repositoryLocationName": location["name"],
                        "repositoryName": repository["name"],
                        "jobName": job,
                    }
        raise self.fail(f"job {job!r} is not in the workspace")

    def launch_run(
        self,
        job: str,
        run_config: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """Launch `job` with the `launchRun` mutation, as the Launchpad does; return its run id."""
        params = {
            "selector": self.job_selector(job),
            "runConfigData": dict(run_config or {}),
            "executionMetadata": {
                "tags": [{"key": key, "value": value} for key, value in (tags or {}).items()]
            },
        }
        result = self.graphql(LAUNCH_RUN, {"executionParams": params})["launchRun"]
        if result["__typename"] != "LaunchRunSuccess":
            raise self.fail(f"launchRun for {job!r} answered {result}")
        return result["run"]["runId"]

    def run_status(self, run_id: str) -> dict[str, Any]:
        run = self.graphql(RUN_STATUS, {"runId": run_id})["runOrError"]
        if run["__typename"] != "Run":
            raise self.fail(f"runOrError({run_id}) answered {run}")
        return run

    def run_events(self, run_id: str) -> list[dict[str, Any]]:
        """The run's event log, as `logsForRun` returns it."""
        events = self.graphql(RUN_EVENTS, {"runId": run_id})["logsForRun"]
        if events["__typename"] != "EventConnection":
            raise self.fail(f"logsForRun({run_id}) answered {events}")
        return events["events"]

    def describe_run(self, run_id: str, lines: int = 30) -> str:
        """The run's last events and any errors in it, for failure messages."""
        out = []
        for event in self.run_events(run_id)[-lines:]:
            step = f"[{event['stepKey']}] " if event.get("stepKey") else ""
            out.append(f"{event['__typename']} {step}{event.get('message', '')}")
            if event.get("error"):
                out.append(f"  {event['error']['message']}\n{event['error']['stack'][-1]}")
        return f"--- run {run_id} ---\n" + "\n".join(out)

    def wait_for_runs(self, run_ids: list[str], timeout_s: float = 300.0) -> dict[str, str]:
        """Poll `runOrError` until every run is finished; return run id -> final status."""
        deadline = time.monotonic() + timeout_s
        statuses: dict[str, str] = {}
        while time.monotonic() < deadline:
            self._check_alive()
            statuses = {run_id: self.run_status(run_id)["status"] for run_id in run_ids}
            if all(status in TERMINAL for status in statuses.values()):
                return statuses
            time.sleep(1.0)
        raise self.fail(f"runs not finished after {timeout_s:.0f}s: {statuses}")

    def wait_for_run(self, run_id: str, timeout_s: float = 300.0) -> str:
        """Poll `runOrError` until the run is finished; return its final status."""
        return self.wait_for_runs([run_id], timeout_s)[run_id]

    def asset_lineage(self, path: list[str]) -> tuple[list[list[str]], list[list[str]]]:
        """The upstream and downstream asset keys the asset graph has for asset `path`."""
        node = self.graphql(ASSET_LINEAGE, {"assetKey": {"path": path}})["assetNodeOrError"]
        if node["__typename"] != "AssetNode":
            raise self.fail(f"no asset node for {path}: {node}")
        return (
            [key["path"] for key in node["dependencyKeys"]],
            [key["path"] for key in node["dependedByKeys"]],
        )

    def dagster(self, *args: str, timeout_s: float = 120.0) -> str:
        """Run the `dagster` CLI against this deployment's instance; return its output."""
        env = {**os.environ, "DAGSTER_HOME": str(self.home)}
        done = subprocess.run(
            [str(BIN / "dagster"), *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        if done.returncode != 0:
            raise self.fail(f"dagster {' '.join(args)} failed: {done.stdout}{done.stderr}")
        return done.stdout

    @contextmanager
    def instance(self) -> Iterator[DagsterInstance]:
        """The deployment's instance, opened in this process (to read run records and events)."""
        with DagsterInstance.from_config(str(self.home)) as instance:
            yield instance

    def storage_dir(self) -> Path:
        """The instance's storage folder (local artifact storage defaults to DAGSTER_HOME)."""
        return self.home / "storage"

    def report_path(self, run_id: str, table: str) -> Path:
        """Where a run's `emit.write_table` output lies under the instance storage."""
        return self.storage_dir() / "marigold" / run_id / "tables" / f"{table}.parquet"


_SHARED_LOCK = threading.Lock()
_shared: dict[str, Any] = {"deployment": None, "context": None, "users": 0}


def acquire_shared(home: Path, postgres_url: str) -> DagsterDeployment:
    """The one deployment of this test session, started on first use (refcounted)."""
    with _SHARED_LOCK:
        if _shared["deployment"] is None:
            context = DagsterDeployment.start(home, postgres_url)
            _shared["deployment"] = context.__enter__()
            _shared["context"] = context
        _shared["users"] += 1
        return _shared["deployment"]


def release_shared() -> None:
    """Stop the shared deployment when its last user is done."""
    with _SHARED_LOCK:
        _shared["users"] -= 1
        if _shared["users"] == 0 and _shared["context"] is not None:
            context = _shared["context"]
            _shared.update(deployment=None, context=None)
            context.__exit__(None, None, None)

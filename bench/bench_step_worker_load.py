"""Step-worker definition loading: one job reconstructed, against every template compiled.

A step worker (a multiprocess child, a Celery task) gets the job of the step it runs by
reconstructing it from the code pointer, `definitions.py`'s `defs`. This bench makes a folder of
N templates (copies of the flagship, each its own job), and in a fresh process per measurement
times, after Dagster and this project are imported:

- `all`: `build_defs(folder)` then that one job from its repository: every template compiled,
  what a worker paid when `defs` was always the full `Definitions`;
- `worker`: the job reconstructed from `definitions.py` as a worker does
  (`ReconstructableRepository.for_file(...).get_reconstructable_job(name).get_definition()`);
- `again`: the same job reconstructed a second time in that process (another step of the run
  on the same worker process).

Prints JSON: median seconds per mode and N, and `all / worker` as a ratio.

    python bench/bench_step_worker_load.py --templates 1 8 32 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLAGSHIP = "contract_review"

CHILD = """
import json, sys, time
from pathlib import Path
import dagster
import dagster._utils.test  # a worker has its instance's storage (SQLAlchemy) imported already
from dagster._core.definitions.reconstruct import ReconstructableRepository
from marigold_dagster.jobs.definitions import build_defs
mode, folder, name = sys.argv[1:4]
started = time.perf_counter()
if mode == "all":
    job = build_defs(Path(folder)).get_repository_def().get_job(name)
    again = None
else:
    repo = ReconstructableRepository.for_file(
        {definitions!r}, "defs", working_directory={root!r}
    )
    job = repo.get_reconstructable_job(name).get_definition()
    first = time.perf_counter() - started
    started = time.perf_counter()
    repo2 = ReconstructableRepository.for_file(
        {definitions!r}, "defs", working_directory={root!r}
    )
    other = repo2.get_reconstructable_job("marigold_gate_decision").get_definition()  # evict lru
    job2 = repo2.get_reconstructable_job(name).get_definition()
    again = time.perf_counter() - started
    print(json.dumps({{"seconds": first, "again": again, "job": job.name}}))
    sys.exit(0)
print(json.dumps({{"seconds": time.perf_counter() - started, "again": again, "job": job.name}}))
"""


def make_templates(folder: Path, count: int) -> list[str]:
    """`count` copies of the flagship, each named `<flagship>_<k>`, with its data folder."""
    source = (ROOT / "templates" / f"{FLAGSHIP}.yaml").read_text()
    folder.mkdir(parents=True)
    os.symlink(ROOT / "templates" / "data", folder / "data")
    names = []
    for k in range(count):
        name = f"{FLAGSHIP}_{k}"
        (folder / f"{name}.yaml").write_text(
            source.replace(f"name: {FLAGSHIP}\n", f"name: {name}\n", 1)
        )
        names.append(name)
    return names


def measure(mode: str, folder: Path, name: str) -> dict[str, float]:
    env = {**os.environ, "MARIGOLD_TEMPLATES_DIR": str(folder), "PYTHONPATH": str(ROOT)}
    env.pop("MARIGOLD_EXECUTOR", None)
    code = CHILD.format(definitions=str(ROOT / "definitions.py"), root=str(ROOT))
    out = subprocess.run(
        [sys.executable, "-c", code, mode, str(folder), name],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--templates", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per mode")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for count in args.templates:
            folder = Path(tmp) / f"templates_{count}"
            name = make_templates(folder, count)[-1]
            runs = {
                mode: [measure(mode, folder, name) for _ in range(args.repeats)]
                for mode in ("all", "worker")
            }
            full = statistics.median(r["seconds"] for r in runs["all"])
            worker = statistics.median(r["seconds"] for r in runs["worker"])
            again = statistics.median(r["again"] for r in runs["worker"])
            results.append(
                {
                    "templates": count,
                    "all_s": round(full, 3),
                    "worker_s": round(worker, 3),
                    "worker_again_s": round(again, 4),
                    "all_over_worker": round(full / worker, 2),
                }
            )
    print(json.dumps({"repeats": args.repeats, "results": results}, indent=2))


if __name__ == "__main__":
    main()

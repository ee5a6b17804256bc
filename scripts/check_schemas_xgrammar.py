"""Compile every JSON Schema the platform sends with xgrammar, SGLang's default grammar backend.

Optional, outside the test suite: xgrammar imports torch, and a fresh machine's torch from PyPI
is the CUDA build (gigabytes), so neither is a dependency of the project. Install both into the
virtual environment first (on these machines `torch==2.13.0` takes the CPU build on disk):

    .venv/bin/pip install torch==2.13.0 xgrammar
    .venv/bin/python scripts/check_schemas_xgrammar.py

Or keep the project's environment clean: write the schemas out with it, and check them with
any Python that has xgrammar (the check needs nothing of the platform):

    .venv/bin/python scripts/check_schemas_xgrammar.py --write schemas.json
    /path/to/xgrammar-env/bin/python scripts/check_schemas_xgrammar.py --read schemas.json

The schemas are those of `tests/real_model/sent_schemas.py` (fragment schemas of every template
and answer schemas of every model-calling primitive), the same the real-model lane sends to
llama.cpp. Exits 1 naming each schema xgrammar cannot compile, 2 when xgrammar is missing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any


def schemas(read: Path | None) -> list[tuple[str, dict[str, Any]]]:
    if read is not None:
        return [(where, schema) for where, schema in json.loads(read.read_text())]
    sys.path.insert(0, str(Path(__file__).parents[1]))  # the checkout, for tests.real_model
    from tests.real_model.sent_schemas import platform_schemas

    return platform_schemas()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, help="only write the schemas to this JSON file")
    parser.add_argument("--read", type=Path, help="check the schemas of this JSON file")
    args = parser.parse_args()
    if args.write is not None:
        args.write.write_text(json.dumps(schemas(None), indent=1))
        return 0
    try:
        import xgrammar  # type: ignore[import-not-found]
    except ImportError as missing:
        print(
            f"xgrammar is not installed ({missing}); install it with "
            "`.venv/bin/pip install torch==2.13.0 xgrammar`",
            file=sys.stderr,
        )
        return 2
    failures = 0
    for where, schema in schemas(args.read):
        started = time.perf_counter()
        try:
            xgrammar.Grammar.from_json_schema(json.dumps(schema), strict_mode=True)
        except Exception as error:  # xgrammar raises RuntimeError and others: report each
            failures += 1
            print(f"FAIL {where}: {type(error).__name__}: {error}")
            continue
        print(f"ok   {where} ({(time.perf_counter() - started) * 1000:.0f} ms)")
    print(f"xgrammar: {failures} schema(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""The `resources` package's public surface."""

import subprocess
import sys

import pytest

import resources

EXPECTED = {
    "FaultPlan",
    "ModelAnswerError",
    "ModelServerCheckError",
    "ModelServerError",
    "ModelUsage",
    "OfflineModel",
    "SGLangNotInstalledError",
    "SGLangResource",
    "SGLangTestServer",
    "SGLangTestServerConfig",
    "build_sglang_command",
    "launch_sglang",
}


def test_exported_members() -> None:
    assert set(resources.__all__) == EXPECTED
    for name in EXPECTED:
        assert getattr(resources, name).__name__ == name


@pytest.mark.slow
def test_the_test_double_is_not_imported_until_used() -> None:
    code = (
        "import sys, resources; "
        "assert 'starlette' not in sys.modules and 'uvicorn' not in sys.modules; "
        "resources.SGLangTestServer; assert 'starlette' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)

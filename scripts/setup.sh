#!/usr/bin/env bash
# Sets up this checkout, idempotently: a virtual environment in .venv installed from
# requirements.lock, so every machine gets exactly the versions CI tested.
#   scripts/setup.sh          the platform (enough to run templates)
#   scripts/setup.sh --dev    also the test and lint tools, and the system packages the tests use
#                             (Debian's chromium for tests/ui/)
set -euo pipefail
cd "$(dirname "$0")/.."

dev=false
case "${1:-}" in
    "") ;;
    --dev) dev=true ;;
    *) echo "usage: scripts/setup.sh [--dev]" >&2; exit 2 ;;
esac

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(not ((3, 11) <= sys.version_info[:2] < (3, 13)))'; then
    echo "setup: $python is $("$python" --version 2>&1); Marigold needs Python 3.11 or 3.12" \
        "(set PYTHON=/path/to/python3.11)" >&2
    exit 1
fi

install_debian_packages() {
    local missing=()
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null; then
            sudo="sudo"
        else
            echo "setup: the tests need Debian packages ${missing[*]}: install them as root" \
                "(apt-get install -y ${missing[*]})" >&2
            exit 1
        fi
    fi
    echo "setup: installing ${missing[*]} from Debian's packages" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

if $dev; then
    install_debian_packages chromium
fi

[ -x .venv/bin/python ] || "$python" -m venv .venv
if $dev; then target=".[dev]"; else target="."; fi
.venv/bin/pip install -q --disable-pip-version-check -c requirements.lock -e "$target"

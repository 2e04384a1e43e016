#!/usr/bin/env bash
# Prints the CMAKE_ARGS for a portable llama.cpp build on this CPU.
# GGML_NATIVE=OFF: the native build compiles AMX kernels that crash (general
# protection fault in ggml_backend_amx_mul_mat) where the CPU advertises AMX but
# the kernel does not grant it. We enable exactly the x86 extensions the CPU has.
set -euo pipefail
flags="-DGGML_NATIVE=OFF"
cpu=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true)
has() { [[ " $cpu " == *" $1 "* ]]; }
if [[ "$(uname -m)" == "x86_64" ]]; then
  has avx && flags+=" -DGGML_AVX=ON"
  has avx2 && flags+=" -DGGML_AVX2=ON"
  has fma && flags+=" -DGGML_FMA=ON"
  has f16c && flags+=" -DGGML_F16C=ON"
  has bmi2 && flags+=" -DGGML_BMI2=ON"
  has avx512f && flags+=" -DGGML_AVX512=ON"
  has avx512_vnni && flags+=" -DGGML_AVX512_VNNI=ON"
  has avx512_bf16 && flags+=" -DGGML_AVX512_BF16=ON"
  has avx512vbmi && flags+=" -DGGML_AVX512_VBMI=ON"
fi
echo "$flags"

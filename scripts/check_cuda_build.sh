#!/usr/bin/env bash
# Compiles kernels/ms_deform_attn/msda_cuda.cu for sm_80 and sm_90 with plain nvcc (no torch involved) and fails if
# ptxas reports any register spill or stack frame, or if the expected kernels are missing. Takes ~5 s on 2 cores.
# Device code only (--fatbin): the host half of the file is compiled by the JIT build (scripts/check_cuda_link.sh).
#
#   bash scripts/check_cuda_build.sh              # nvcc from CUDA_HOME, /usr/local/cuda or PATH
#   ARCHS="80 90 100" bash scripts/check_cuda_build.sh
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SOURCE="$REPO/kernels/ms_deform_attn/msda_cuda.cu"
ARCHS="${ARCHS:-80 90}"

NVCC=""
for candidate in "${CUDA_HOME:-}/bin/nvcc" /usr/local/cuda/bin/nvcc "$(command -v nvcc || true)"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then NVCC="$candidate"; break; fi
done
if [ -z "$NVCC" ]; then
    echo "check_cuda_build: no nvcc found (set CUDA_HOME)" >&2
    exit 1
fi

GENCODE=()
for arch in $ARCHS; do GENCODE+=(-gencode "arch=compute_${arch},code=sm_${arch}"); done
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

start=$(date +%s%N)
# Same flags as the JIT build: msda_build.CUDA_CFLAGS plus what torch.utils.cpp_extension adds.
"$NVCC" -O3 -lineinfo -std=c++20 --expt-relaxed-constexpr -D__CUDA_NO_HALF_OPERATORS__ -D__CUDA_NO_HALF_CONVERSIONS__ \
    -D__CUDA_NO_BFLOAT16_CONVERSIONS__ -D__CUDA_NO_HALF2_OPERATORS__ --fatbin "${GENCODE[@]}" -Xptxas -v --threads 2 \
    -I"$REPO/kernels/ms_deform_attn" "$SOURCE" -o "$WORK/msda_cuda.fatbin" > "$WORK/ptxas.log" 2>&1 || {
    cat "$WORK/ptxas.log" >&2
    echo "check_cuda_build: nvcc failed" >&2
    exit 1
}
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))

num_archs=$(echo $ARCHS | wc -w)
# 2 kernels (forward, backward) x 4 dtypes x 3 channels-per-lane variants, per arch.
expected=$((24 * num_archs))
entries=$(grep -c "Compiling entry function" "$WORK/ptxas.log" || true)
clean=$(grep -c "0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads" "$WORK/ptxas.log" || true)
max_registers=$(grep -o "Used [0-9]* registers" "$WORK/ptxas.log" | awk '{print $2}' | sort -n | tail -1)
echo "check_cuda_build: ${entries} kernels for sm_${ARCHS// /,sm_} in ${elapsed_ms} ms, ${clean} without spills or stack, max ${max_registers} registers"
if [ "$entries" -ne "$expected" ]; then
    echo "check_cuda_build: expected ${expected} kernels, ptxas compiled ${entries}" >&2
    exit 1
fi
if [ "$clean" -ne "$entries" ]; then
    grep -B3 "bytes spill" "$WORK/ptxas.log" | grep -v " 0 bytes spill stores, 0 bytes spill loads" >&2 || true
    echo "check_cuda_build: some kernels spill registers or use a stack frame" >&2
    exit 1
fi

#!/usr/bin/env bash
# Links and loads the CUDA build of the deformable-attention kernels against torch 2.14.1+cu130, without a GPU.
#
# What it checks: the full JIT build (nvcc for sm_80 and sm_90 + g++ for the ATen wrappers) through
# transformers_maskdino.msda_kernels.load_kernel("cuda"), that the .so loads, that the CUDA kernels are registered
# for both ops, and that the whole test suite passes on CPU under that torch too (the newest torch pip installs
# here, so also what `pip install transformers-maskdino` gives users by default). It cannot run a CUDA kernel.
#
# Cost: a 5.8 GB venv (torch 2.14.1 with its nvidia-* wheels; ~2.5 min to install from the local package index), ~15 s
# of compiling and ~2.5 min of tests. CI runs it last (.ci/run); by hand:
#   bash scripts/check_cuda_link.sh            # venv in /tmp/maskdino-cu130 (kept for the next run)
#   VENV=/path/to/venv bash scripts/check_cuda_link.sh
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-/tmp/maskdino-cu130}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.14.1}"
# with torchvision, the suite also runs the torchvision image processor (MaskDinoImageProcessor) and its parity tests
TORCHVISION_SPEC="${TORCHVISION_SPEC:-torchvision==0.29.1}"

if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import torch, torchvision, sys; sys.exit(0 if torch.version.cuda and torch.version.cuda.startswith('13.') else 1)" 2>/dev/null; then
    "$VENV/bin/pip" install --quiet "$TORCH_SPEC" "$TORCHVISION_SPEC"
fi
# INSTALL_ONLY=1: only the venv and torch (CI installs them while its first test pass runs)
if [ "${INSTALL_ONLY:-0}" = 1 ]; then
    exit 0
fi
# the package and its test dependencies; the CUDA torch above already satisfies its torch requirement
"$VENV/bin/pip" install --quiet -e "$REPO[dev]"

export CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}"
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-8.0;9.0}"
export TORCH_EXTENSIONS_DIR="${TORCH_EXTENSIONS_DIR:-$VENV/torch_extensions}"

MASKDINO_KERNELS=require "$VENV/bin/python" - <<'PY'
import time

import torch

from transformers_maskdino import msda_kernels

print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), GPU available: {torch.cuda.is_available()}")
start = time.time()
path = msda_kernels.load_kernel("cuda")
print(f"CUDA build loaded in {time.time() - start:.1f} s: {path}")
for op in ("ms_deform_attn_forward", "ms_deform_attn_backward"):
    name = f"maskdino_msda::{op}"
    for key in ("CUDA", "Meta"):
        if not torch._C._dispatch_has_kernel_for_dispatch_key(name, key):
            raise SystemExit(f"{name} has no {key} kernel")
print("CUDA and Meta kernels registered for both ops")
import subprocess

cudart = [line.strip() for line in subprocess.run(["ldd", path], capture_output=True, text=True).stdout.splitlines() if "cudart" in line]
print("links:", cudart)
if not cudart or "not found" in cudart[0]:
    raise SystemExit("the CUDA build does not resolve libcudart")
if not torch.cuda.is_available():
    value = torch.zeros(1, 1, 1, 1)
    try:
        torch.ops.maskdino_msda.ms_deform_attn_forward(
            value, torch.ones(1, 2, dtype=torch.long), torch.zeros(1, dtype=torch.long),
            torch.zeros(1, 1, 1, 1, 1, 2), torch.zeros(1, 1, 1, 1, 1),
        )
    except Exception as error:  # CPU tensors: no CPU kernel is loaded yet in this process
        print(f"CPU call before the CPU build fails as expected: {type(error).__name__}")
PY

cd "$REPO" && "$VENV/bin/python" -m pytest -q -p no:cacheprovider

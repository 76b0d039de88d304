#!/usr/bin/env bash
# The CUDA path checked on a real GPU, in one prepared run (under 8 minutes on one H200, no network):
#   1. installs the package and what the machine lacks from the carried wheels, leaving its torch alone;
#   2. JIT-builds the CUDA kernel (timed) and runs `MASKDINO_KERNELS=require pytest -m cuda`;
#   3. runs the reference-fixture parity tests on the GPU: float32 at the CPU tolerance, bf16 and fp16 agreement;
#   4. checks forward and backward of the CUDA kernel against the PyTorch path, also under torch.compile and through
#      the Hub kernel if the `kernels` package and its cached kernel are there;
#   5. benchmarks the full-size R50 instance model at 1x3x800x1216 in fp32, bf16 and fp16 (latency, images per second
#      at batch 1 and 8, peak GPU memory, CUDA kernel vs grid_sample path);
#   6. writes $OUT/gpu_report.md, $OUT/gpu_report.json and the logs of every step.
# The report format is documented in docs/kernels.md ("The GPU check").
#
# On the GPU machine, from the repository root, after `bash scripts/prepare_gpu_wheels.sh` here:
#   bash scripts/gpu_check.sh            # reads .gpu_carry/ (wheels + fixtures), writes to $OUT
# Here or in CI, the whole script on CPU, the CUDA-only parts skipped and the rest at small sizes:
#   bash scripts/gpu_check.sh --dry-run
# Each step records its status and the script goes on; it exits non-zero if any step failed.
set -uo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
DRY_RUN=0
for argument in "$@"; do
    case "$argument" in
        --dry-run) DRY_RUN=1 ;;
        *) echo "gpu_check.sh: unknown argument $argument (expected --dry-run or nothing)" >&2; exit 2 ;;
    esac
done
CARRY="${MASKDINO_GPU_CARRY:-$REPO/.gpu_carry}"
OUT="${OUT:-$REPO/out/gpu_check}"
PYTHON="${PYTHON:-python3}"
mkdir -p "$OUT"
STEPS="$OUT/steps.jsonl"
: > "$STEPS"
export PYTHONUNBUFFERED=1 MASKDINO_REFERENCE_DIR="$CARRY/reference"
export TORCH_EXTENSIONS_DIR="${TORCH_EXTENSIONS_DIR:-$(mktemp -d)/torch_extensions}"
export HF_HOME="${HF_HOME:-$(mktemp -d)/hf_home}"
if [ "$DRY_RUN" = 1 ]; then DEVICE=cpu; else DEVICE=cuda; fi
# "cpu:0" is the CPU, but it makes the parity plugin move models and tensors as it does for a GPU
if [ "$DRY_RUN" = 1 ]; then PARITY_DEVICE=cpu:0; else PARITY_DEVICE=cuda; fi

# step NAME LOG TIMEOUT COMMAND...: runs the command with its output in $OUT/LOG, records status and seconds
step() {
    local name="$1" log="$2" limit="$3"
    shift 3
    local start status
    start=$(date +%s%N)
    echo "== $name (limit ${limit} s, log $log)"
    timeout --kill-after=10 "$limit" "$@" > "$OUT/$log" 2>&1
    status=$?
    local seconds=$(( ($(date +%s%N) - start) / 1000000000 ))
    tail -n 3 "$OUT/$log"
    "$PYTHON" - "$name" "$status" "$seconds" "$log" >> "$STEPS" <<'PY'
import json, sys
name, status, seconds, log = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
verdict = "passed" if status == 0 else ("timed out" if status in (124, 137) else "failed")
print(json.dumps({"name": name, "status": verdict, "exit_code": status, "seconds": round(seconds, 1), "log": log}))
PY
    echo "   -> exit $status in $seconds s"
}

# 1. Install. The package and transformers at our pin come from the carried wheels only (--no-index); pip keeps
# whatever installed version already satisfies a requirement, so the machine's torch stays (checked after).
install() {
    if [ ! -d "$CARRY/wheels" ]; then
        echo "no $CARRY/wheels: run scripts/prepare_gpu_wheels.sh first"
        return 1
    fi
    local torch_before
    torch_before=$("$PYTHON" -c "import torch; print(torch.__version__)") || return 1
    "$PYTHON" -m pip install --no-index --find-links "$CARRY/wheels" hatchling || return 1
    "$PYTHON" -m pip install --no-index --find-links "$CARRY/wheels" --no-build-isolation "$REPO" || return 1
    local torch_after
    torch_after=$("$PYTHON" -c "import torch; print(torch.__version__)")
    echo "torch before $torch_before, after $torch_after"
    [ "$torch_before" = "$torch_after" ] || { echo "the install replaced torch"; return 1; }
    "$PYTHON" -c "import transformers, transformers_maskdino; print('transformers', transformers.__version__, 'maskdino', transformers_maskdino.__file__)"
}
if [ "$DRY_RUN" = 1 ]; then
    # A throwaway venv stands in for the GPU machine: its torch (the CPU build here) and the packages of its image
    # that the package needs (the device tool's KINDS.md lists them); the rest must come from the carried wheels.
    DRY_VENV="${GPU_CHECK_DRY_VENV:-$(mktemp -d)/venv}"  # set it to reuse one between runs
    [ -x "$DRY_VENV/bin/python" ] || "$PYTHON" -m venv "$DRY_VENV"
    "$DRY_VENV/bin/python" -m pip install --quiet torch==2.13.0 numpy scipy pillow safetensors huggingface_hub==1.33.0 \
        ninja pyyaml filelock tokenizers typer tqdm pytest
    PYTHON="$DRY_VENV/bin/python"
fi
export -f install
export CARRY PYTHON REPO
step install install.log 300 bash -c install

# 2. The CUDA build, timed, then the CUDA tests.
if [ "$DRY_RUN" = 1 ]; then
    step "cuda tests (collected only: no GPU)" cuda_tests.log 120 \
        "$PYTHON" -m pytest -q -p no:cacheprovider -m cuda --collect-only tests/test_kernels_cuda.py
else
    step "cuda build" cuda_build.log 300 "$PYTHON" scripts/gpu_check.py build --device cuda --out "$OUT"
    step "cuda tests" cuda_tests.log 240 env MASKDINO_KERNELS=require \
        "$PYTHON" -m pytest -q -p no:cacheprovider -m cuda -rA tests/test_kernels_cuda.py
fi

# 3. Parity on the device: the fixture tests, with every model they load moved to $DEVICE (scripts/gpu_device_plugin.py).
PARITY_TESTS=(tests/test_modeling_parity.py tests/test_end_to_end.py)
for file in tests/test_half_precision*.py; do [ -f "$file" ] && PARITY_TESTS+=("$file"); done
SELECTION=()
if [ "$DRY_RUN" = 1 ]; then SELECTION=(-k "r50_instance"); fi  # CI's main suite already runs them all on CPU
step "parity tests on $PARITY_DEVICE" parity_tests.log 300 env MASKDINO_TEST_DEVICE="$PARITY_DEVICE" PYTHONPATH="$REPO/scripts" \
    "$PYTHON" -m pytest -q -p no:cacheprovider -p gpu_device_plugin -rA "${SELECTION[@]}" "${PARITY_TESTS[@]}"

# 4. Kernel against the PyTorch path; 5. the full-size model benchmark (small sizes in a dry run).
DRY_FLAG=()
if [ "$DRY_RUN" = 1 ]; then DRY_FLAG=(--dry-run); fi
step "kernel checks on $DEVICE" kernel_checks.log 180 "$PYTHON" scripts/gpu_check.py kernels --device "$DEVICE" --out "$OUT" "${DRY_FLAG[@]}"
step "benchmark on $DEVICE" benchmark.log 300 "$PYTHON" scripts/gpu_check.py benchmark --device "$DEVICE" --out "$OUT" "${DRY_FLAG[@]}"

# 6. The report.
"$PYTHON" scripts/gpu_check.py report --device "$DEVICE" --out "$OUT" "${DRY_FLAG[@]}"

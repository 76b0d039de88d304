#!/usr/bin/env bash
# Fills the git-ignored folder that scripts/gpu_check.sh reads on a GPU machine without network: Python wheels for
# what that machine lacks, and a copy of the reference fixtures the parity step needs (../shared does not travel).
#
#   bash scripts/prepare_gpu_wheels.sh                 # -> .gpu_carry/{wheels,reference}, Python 3.12 manylinux x86_64
#   PYTHON_VERSION=3.11 bash scripts/prepare_gpu_wheels.sh   # wheels for this machine's Python (gpu_check --dry-run in CI)
#
# Wheels (pip download --only-binary=:all: --no-deps for the target Python): transformers at the version this checkout
# is tested with, hatchling and its dependencies (to build the package there), pycocotools, and regex (transformers
# needs a recent one). The rest of what they need is on the GPU machine already (its package list is in the device
# tool's KINDS.md): carrying it would not fit. There pip installs only what is missing or too old, from this folder
# alone; its torch is never replaced (gpu_check.sh checks that).
# Fixtures: the variants in GPU_CHECK_VARIANTS (default r50_instance and swin_panoptic: ResNet and Swin, instance and
# panoptic). All four do not fit: the device tool carries at most 64 MiB with the working tree, and each is 20-26 MB.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CARRY="${MASKDINO_GPU_CARRY:-$REPO/.gpu_carry}"
PYTHON_VERSION="${PYTHON_VERSION:-3.12}"
REFERENCE_DIR="${MASKDINO_REFERENCE_DIR:-$REPO/../shared/reference}"
VARIANTS="${GPU_CHECK_VARIANTS:-r50_instance swin_panoptic}"
# transformers: the one installed here (else pyproject's lowest), at most 5.24 (5.25 needs huggingface_hub >= 2.4 and
# kernels; the GPU image has huggingface_hub 1.33)
TRANSFORMERS_VERSION="${TRANSFORMERS_VERSION:-$(python3 -c 'import transformers as t; v = t.__version__
print(v if tuple(map(int, v.split(".")[:2])) < (5, 25) else "5.24.0")' 2>/dev/null || echo 5.23.0)}"

rm -rf "$CARRY/wheels" "$CARRY/reference"
mkdir -p "$CARRY/wheels" "$CARRY/reference"
PLATFORMS=()
for tag in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
    PLATFORMS+=(--platform "$tag")
done
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version "$PYTHON_VERSION" --implementation cp \
    "${PLATFORMS[@]}" --dest "$CARRY/wheels" \
    "transformers==$TRANSFORMERS_VERSION" "hatchling>=1.24" trove-classifiers tomlkit packaging pathspec pluggy \
    "pycocotools>=2.0.7" "regex>=2025.10.22"

for variant in $VARIANTS; do
    source="$REFERENCE_DIR/$variant"
    if [ ! -f "$source/model.pth" ]; then
        echo "prepare_gpu_wheels: no fixture $source/model.pth (set MASKDINO_REFERENCE_DIR)" >&2
        exit 1
    fi
    mkdir -p "$CARRY/reference/$variant"
    # what the parity tests read; not the loss targets (the loss parity tests stay on CPU)
    for name in config.yaml metadata.json image.png image2.png inputs.safetensors intermediates.safetensors \
        outputs.safetensors postprocessed.safetensors segments_info.json model.pth; do
        if [ -f "$source/$name" ]; then cp "$source/$name" "$CARRY/reference/$variant/"; fi
    done
done
cp "$REFERENCE_DIR/README.md" "$CARRY/reference/"
echo "prepare_gpu_wheels: $(ls "$CARRY/wheels" | wc -l) wheels ($(du -sh "$CARRY/wheels" | cut -f1)), fixtures $VARIANTS ($(du -sh "$CARRY/reference" | cut -f1)) in $CARRY (transformers $TRANSFORMERS_VERSION, Python $PYTHON_VERSION)"

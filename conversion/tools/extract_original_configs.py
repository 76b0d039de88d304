# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""
Regenerates `conversion/configs/` from a checkout of the original repository (IDEA-Research/MaskDINO).

    python conversion/tools/extract_original_configs.py --original-repo /path/to/MaskDINO
    python conversion/tools/extract_original_configs.py --keys-from-dump shared/reference/*/config.yaml

For every yaml under the original's `configs/`, it writes a yaml at the same relative path that keeps the `_BASE_`
link and only the keys the converter reads (`KEPT_KEYS` below): architecture, pixel statistics, input format and
test-time resize, inference thresholds, loss weights, and the evaluation dataset. Solver, data-loader and
training-augmentation settings are left out. The converter resolves `_BASE_` the same way for these files as for the
originals, so `--config-file conversion/configs/<path>` and `--config-file <MaskDINO>/configs/<path>` give the same
model. With `--keys-from-dump`, it instead rewrites `conversion/detectron2_config_keys.txt`, the keys a yaml may set,
from full `cfg.dump()` outputs of the original.
"""

import argparse
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from convert_maskdino_to_hf import Detectron2YamlLoader, flatten_keys

KEYS_FILE = Path(__file__).resolve().parents[1] / "detectron2_config_keys.txt"

# Dotted prefixes of the keys to keep; a prefix keeps its whole subtree.
KEPT_KEYS = (
    "MODEL.META_ARCHITECTURE",
    "MODEL.BACKBONE.NAME",
    "MODEL.PIXEL_MEAN",
    "MODEL.PIXEL_STD",
    "MODEL.RESNETS.DEPTH",
    "MODEL.RESNETS.STEM_TYPE",
    "MODEL.RESNETS.STEM_OUT_CHANNELS",
    "MODEL.RESNETS.STRIDE_IN_1X1",
    "MODEL.RESNETS.OUT_FEATURES",
    "MODEL.RESNETS.NORM",
    "MODEL.RESNETS.RES2_OUT_CHANNELS",
    "MODEL.RESNETS.NUM_GROUPS",
    "MODEL.RESNETS.WIDTH_PER_GROUP",
    "MODEL.RESNETS.RES5_DILATION",
    "MODEL.RESNETS.DEFORM_ON_PER_STAGE",
    "MODEL.SWIN",
    "MODEL.SEM_SEG_HEAD",
    "MODEL.MaskDINO",
    "INPUT.FORMAT",
    "INPUT.MIN_SIZE_TEST",
    "INPUT.MAX_SIZE_TEST",
    "DATASETS.TEST",
    "TEST.DETECTIONS_PER_IMAGE",
)
# Keys under the kept subtrees that only matter for training or are never read.
DROPPED_KEYS = (
    "MODEL.SEM_SEG_HEAD.NAME",
    "MODEL.SEM_SEG_HEAD.IGNORE_VALUE",
    "MODEL.SEM_SEG_HEAD.LOSS_WEIGHT",
    "MODEL.MaskDINO.TRANSFORMER_DECODER_NAME",
    "MODEL.MaskDINO.ENC_LAYERS",
    "MODEL.MaskDINO.PRE_NORM",
    "MODEL.MaskDINO.EVAL_FLAG",
    "MODEL.SWIN.USE_CHECKPOINT",
)


def _keep(tree: dict, prefix: str = "", keep_all: bool = False) -> dict:
    kept = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if key == "_BASE_" and not prefix:
            kept[key] = value
            continue
        if dotted in DROPPED_KEYS:
            continue
        inside = keep_all or any(dotted == k or dotted.startswith(k + ".") for k in KEPT_KEYS)
        if isinstance(value, dict) and (inside or any(k.startswith(dotted + ".") for k in KEPT_KEYS)):
            sub = _keep(value, dotted + ".", keep_all=inside)
            if sub:
                kept[key] = sub
        elif inside:
            kept[key] = value
    return kept


def extract(original_repo: Path, output_dir: Path, commit: str) -> list[Path]:
    written = []
    for source in sorted((original_repo / "configs").rglob("*.yaml")):
        relative = source.relative_to(original_repo / "configs")
        with open(source) as f:
            tree = yaml.load(f, Loader=Detectron2YamlLoader) or {}
        kept = _keep(tree)
        target = output_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        header = f"# Settings the converter reads from IDEA-Research/MaskDINO@{commit} configs/{relative.as_posix()}\n"
        with open(target, "w") as f:
            f.write(header)
            yaml.safe_dump(kept, f, sort_keys=False, default_flow_style=None, width=120)
        written.append(target)
    return written


def write_known_keys(dumps: list[Path], keys_file: Path = KEYS_FILE) -> int:
    """Rewrites `detectron2_config_keys.txt` (keeping its header) with every key of full `cfg.dump()` outputs."""
    keys = set()
    for dump in dumps:
        with open(dump) as f:
            keys |= set(flatten_keys(yaml.load(f, Loader=Detectron2YamlLoader)))
    header = [line for line in keys_file.read_text().splitlines() if line.startswith("#")]
    keys_file.write_text("\n".join(header + sorted(keys)) + "\n")
    return len(keys)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys-from-dump", nargs="+", type=Path, metavar="CONFIG.yaml", help="instead: rewrite "
                        "detectron2_config_keys.txt from full cfg.dump() outputs of the original (e.g. the reference "
                        "fixtures' config.yaml), and exit")
    parser.add_argument("--original-repo", type=Path, help="checkout of IDEA-Research/MaskDINO")
    parser.add_argument("--commit", default="3831d85", help="commit of that checkout, recorded in each file")
    parser.add_argument(
        "--output-dir", type=Path, default=Path(__file__).resolve().parents[1] / "configs", help="where to write"
    )
    args = parser.parse_args(argv)
    if args.keys_from_dump:
        print(f"Wrote {write_known_keys(args.keys_from_dump)} keys to {KEYS_FILE}")
        return
    if args.original_repo is None:
        parser.error("--original-repo is required")
    written = extract(args.original_repo, args.output_dir, args.commit)
    print(f"Wrote {len(written)} files under {args.output_dir}")


if __name__ == "__main__":
    main()

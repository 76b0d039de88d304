# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""
Convert an original Mask DINO checkpoint (detectron2 `.pth`) into a Hub-ready transformers model directory.

One of the eight released checkpoints, by name (downloads it unless `--checkpoint` gives a local copy):

    python conversion/convert_maskdino_to_hf.py --model-name maskdino-r50-coco-panoptic --output-dir DIR \
        [--checkpoint LOCAL.pth] [--verify ORIGINAL_OUTPUTS.safetensors] [--push-to-hub ORG/REPO]

Any checkpoint, with its detectron2 yaml (following `_BASE_`) and optional dataset metadata:

    python conversion/convert_maskdino_to_hf.py --config-file CONFIG.yaml --checkpoint MODEL.pth --output-dir DIR \
        [--metadata METADATA.json] [--verify ORIGINAL_OUTPUTS.safetensors] [--push-to-hub ORG/REPO]

`--list-models` lists the released names. The directory holds `config.json`, `model.safetensors`,
`preprocessor_config.json` (the dataset's test-time resize and the checkpoint's inference settings), the code files
that `trust_remote_code=True` loads when `transformers_maskdino` is not installed, and, for released checkpoints, a
model card (`README.md`). The converter refuses to write when a checkpoint tensor is not used, a model tensor is not
filled, or a shape differs. `--verify` compares the converted model's outputs with outputs saved from the original
(format in `conversion/README.md`). `--push-to-hub` uploads the directory with `huggingface_hub` and needs a write
token (`hf auth login`, `HF_TOKEN`, or `--token`).
"""

import argparse
import ast
import contextlib
import difflib
import glob
import hashlib
import json
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
import transformers
import yaml
from transformers import ResNetConfig, SwinConfig

import transformers_maskdino
from transformers_maskdino import MaskDinoConfig, MaskDinoForUniversalSegmentation
from transformers_maskdino import MaskDinoImageProcessorPil as MaskDinoImageProcessor  # the original's resizing
from transformers_maskdino.remote_code import REMOTE_CODE_MODULES, sync_remote_code

CONVERSION_DIR = Path(__file__).resolve().parent
DEFAULT_CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "transformers_maskdino" / "checkpoints"


class ConversionError(ValueError):
    """The checkpoint or config cannot be converted faithfully."""


# ---- detectron2 yaml -> MaskDinoConfig ----


def _merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class UnevaluatedPythonTag:
    """A value written with a `!!python/...` yaml tag (e.g. detectron2's `!!python/object/apply:eval [...]`), kept
    as text. The converter never evaluates code from a config file; it fails if it needs such a value."""

    def __init__(self, tag: str, value):
        self.tag = tag
        self.value = value

    def __repr__(self):
        return f"!!{self.tag} {self.value!r}"


class Detectron2YamlLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that also reads the `!!python/...` tags detectron2 configs use, without running them."""


def _construct_python_tag(loader, tag_suffix, node):
    if isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    else:
        value = loader.construct_scalar(node)
    if tag_suffix == "tuple":
        return list(value)
    return UnevaluatedPythonTag(f"python/{tag_suffix}", value)


Detectron2YamlLoader.add_multi_constructor("tag:yaml.org,2002:python/", _construct_python_tag)


def flatten_keys(tree: dict, prefix: str = "") -> dict[str, object]:
    """`{"MODEL": {"MaskDINO": {"DN": "seg"}}}` -> `{"MODEL.MaskDINO.DN": "seg"}` (an empty mapping is a leaf)."""
    flat = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten_keys(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def _read_known_keys() -> frozenset[str]:
    lines = (CONVERSION_DIR / "detectron2_config_keys.txt").read_text().splitlines()
    return frozenset(line.strip() for line in lines if line.strip() and not line.startswith("#"))


# every key detectron2 with Mask DINO's additions accepts (`detectron2_config_keys.txt`), and the sections above them
KNOWN_KEYS = _read_known_keys()
KNOWN_SECTIONS = frozenset(key.rsplit(".", i)[0] for key in KNOWN_KEYS for i in range(1, key.count(".") + 1))


def unknown_key_problems(tree: dict, prefix: str = "") -> list[str]:
    """The keys of one yaml file that detectron2 would refuse, each with the closest known key."""
    problems = []
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if dotted == "_BASE_":
            continue
        if dotted in KNOWN_SECTIONS:
            if isinstance(value, dict):
                problems += unknown_key_problems(value, dotted + ".")
            else:
                problems.append(f"{dotted} is a section of the config, but it is set to {value!r} instead of a mapping")
        elif dotted not in KNOWN_KEYS:
            close = closest_known_key(dotted)
            problems.append(f"unknown key {dotted}" + (f"; did you mean {close}?" if close else ""))
    return problems


def closest_known_key(dotted: str) -> str | None:
    """The known key or section `dotted` most likely misspells: same letters in another case, else the closest
    name in the same section, else the closest anywhere."""
    candidates = KNOWN_KEYS | KNOWN_SECTIONS
    same_letters = [key for key in candidates if key.lower() == dotted.lower()]
    if same_letters:
        return same_letters[0]
    section = dotted.rpartition(".")[0]
    siblings = [key for key in candidates if key.rpartition(".")[0] == section]
    close = difflib.get_close_matches(dotted, siblings, n=1) or difflib.get_close_matches(dotted, candidates, n=1)
    return close[0] if close else None


class Detectron2Config(dict):
    """A merged detectron2 config (nested dicts) that remembers which file set each key (`origins`)."""

    def __init__(self, tree: dict, origins: dict[str, Path]):
        super().__init__(tree)
        self.origins = origins


def _read_yaml_mapping(path: Path) -> dict:
    try:
        with open(path) as f:
            cfg = yaml.load(f, Loader=Detectron2YamlLoader)
    except yaml.YAMLError as error:
        raise ConversionError(f"{path} is not valid yaml: {error}") from error
    except UnicodeDecodeError as error:
        raise ConversionError(f"{path} is not a yaml text file: {error}") from error
    if cfg is None:
        return {}
    if not isinstance(cfg, dict):
        raise ConversionError(
            f"{path} is not a detectron2 config: expected a mapping at the top level, got {type(cfg).__name__}."
        )
    return cfg


def load_detectron2_yaml(path: str | Path, _included_from: tuple[Path, ...] = ()) -> Detectron2Config:
    """
    Reads a detectron2 yaml, following `_BASE_` files (relative to the file that names them). As detectron2 does, it
    refuses keys detectron2 and Mask DINO do not have (naming the closest known key), and a `_BASE_` cycle.
    """
    path = Path(path)
    if not path.is_file():
        where = f" (the _BASE_ of {_included_from[-1]})" if _included_from else ""
        raise FileNotFoundError(f"Config file {path}{where} does not exist.")
    resolved = path.resolve()
    if resolved in _included_from:
        chain = " -> ".join(str(p) for p in (*_included_from[_included_from.index(resolved) :], resolved))
        raise ConversionError(f"{path}: the _BASE_ files form a cycle: {chain}.")
    cfg = _read_yaml_mapping(path)
    problems = unknown_key_problems(cfg)
    if problems:
        raise ConversionError(f"{path} sets keys that detectron2 does not have:\n  " + "\n  ".join(problems))
    base = cfg.pop("_BASE_", None)
    origins = dict.fromkeys(flatten_keys(cfg), path)
    if base is None:
        return Detectron2Config(cfg, origins)
    if not isinstance(base, str):
        raise ConversionError(f"{path}: _BASE_ must be the path of a yaml file, got {base!r}.")
    base_cfg = load_detectron2_yaml(path.parent / base, (*_included_from, resolved))
    return Detectron2Config(_merge(base_cfg, cfg), {**base_cfg.origins, **origins})


# The value of every key the converter reads when a yaml does not set it: detectron2's defaults
# (`detectron2/config/defaults.py`) with the original's additions (`maskdino/config.py` `add_maskdino_config`). The
# original's yamls rely on them (e.g. `FEATURE_ORDER` is only set by some configs), so they must be the original's.
ORIGINAL_DEFAULTS = {
    # detectron2
    "MODEL.BACKBONE.NAME": "build_resnet_backbone",
    "MODEL.PIXEL_MEAN": [103.530, 116.280, 123.675],
    "MODEL.PIXEL_STD": [1.0, 1.0, 1.0],
    "MODEL.RESNETS.DEPTH": 50,
    "MODEL.RESNETS.NORM": "FrozenBN",
    "MODEL.RESNETS.NUM_GROUPS": 1,
    "MODEL.RESNETS.WIDTH_PER_GROUP": 64,
    "MODEL.RESNETS.STRIDE_IN_1X1": True,
    "MODEL.RESNETS.RES5_DILATION": 1,
    "MODEL.RESNETS.RES2_OUT_CHANNELS": 256,
    "MODEL.RESNETS.STEM_OUT_CHANNELS": 64,
    "MODEL.RESNETS.DEFORM_ON_PER_STAGE": [False, False, False, False],
    "MODEL.RESNETS.STEM_TYPE": "basic",  # not a detectron2 key; the original's yamls write it and mark it unused
    "MODEL.SEM_SEG_HEAD.IN_FEATURES": ["p2", "p3", "p4", "p5"],
    "MODEL.SEM_SEG_HEAD.CONVS_DIM": 128,
    "MODEL.SEM_SEG_HEAD.COMMON_STRIDE": 4,
    "MODEL.SEM_SEG_HEAD.NORM": "GN",
    "INPUT.MIN_SIZE_TEST": 800,
    "INPUT.MAX_SIZE_TEST": 1333,
    "INPUT.FORMAT": "BGR",
    "TEST.DETECTIONS_PER_IMAGE": 100,
    # maskdino/config.py
    "MODEL.MaskDINO.LEARN_TGT": False,
    "MODEL.MaskDINO.PANO_BOX_LOSS": False,
    "MODEL.MaskDINO.SEMANTIC_CE_LOSS": False,
    "MODEL.MaskDINO.DEEP_SUPERVISION": True,
    "MODEL.MaskDINO.NO_OBJECT_WEIGHT": 0.1,
    "MODEL.MaskDINO.CLASS_WEIGHT": 4.0,
    "MODEL.MaskDINO.DICE_WEIGHT": 5.0,
    "MODEL.MaskDINO.MASK_WEIGHT": 5.0,
    "MODEL.MaskDINO.BOX_WEIGHT": 5.0,
    "MODEL.MaskDINO.GIOU_WEIGHT": 2.0,
    "MODEL.MaskDINO.COST_CLASS_WEIGHT": 4.0,
    "MODEL.MaskDINO.COST_DICE_WEIGHT": 5.0,
    "MODEL.MaskDINO.COST_MASK_WEIGHT": 5.0,
    "MODEL.MaskDINO.COST_BOX_WEIGHT": 5.0,
    "MODEL.MaskDINO.COST_GIOU_WEIGHT": 2.0,
    "MODEL.MaskDINO.NHEADS": 8,
    "MODEL.MaskDINO.DROPOUT": 0.1,
    "MODEL.MaskDINO.DIM_FEEDFORWARD": 2048,
    "MODEL.MaskDINO.DEC_LAYERS": 6,
    "MODEL.MaskDINO.INITIAL_PRED": True,
    "MODEL.MaskDINO.BOX_LOSS": True,
    "MODEL.MaskDINO.HIDDEN_DIM": 256,
    "MODEL.MaskDINO.NUM_OBJECT_QUERIES": 100,
    "MODEL.MaskDINO.ENFORCE_INPUT_PROJ": False,
    "MODEL.MaskDINO.TWO_STAGE": True,
    "MODEL.MaskDINO.INITIALIZE_BOX_TYPE": "no",
    "MODEL.MaskDINO.DN": "seg",
    "MODEL.MaskDINO.DN_NOISE_SCALE": 0.4,
    "MODEL.MaskDINO.DN_NUM": 100,
    "MODEL.SEM_SEG_HEAD.DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES": ["res3", "res4", "res5"],
    "MODEL.SEM_SEG_HEAD.DIM_FEEDFORWARD": 1024,
    "MODEL.SEM_SEG_HEAD.TOTAL_NUM_FEATURE_LEVELS": 4,
    "MODEL.SEM_SEG_HEAD.FEATURE_ORDER": "high2low",
    "MODEL.MaskDINO.TEST.SEMANTIC_ON": True,
    "MODEL.MaskDINO.TEST.INSTANCE_ON": False,
    "MODEL.MaskDINO.TEST.PANOPTIC_ON": False,
    "MODEL.MaskDINO.TEST.OBJECT_MASK_THRESHOLD": 0.0,
    "MODEL.MaskDINO.TEST.OVERLAP_THRESHOLD": 0.0,
    "MODEL.MaskDINO.TEST.PANO_TRANSFORM_EVAL": True,
    "MODEL.MaskDINO.TEST.PANO_TEMPERATURE": 0.06,
    "MODEL.MaskDINO.TEST.SEM_SEG_POSTPROCESSING_BEFORE_INFERENCE": False,
    "MODEL.MaskDINO.SIZE_DIVISIBILITY": 32,
    "MODEL.SEM_SEG_HEAD.MASK_DIM": 256,
    "MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS": 0,
    "MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME": "MaskDINOEncoder",
    "MODEL.MaskDINO.TRAIN_NUM_POINTS": 112 * 112,
    "MODEL.MaskDINO.OVERSAMPLE_RATIO": 3.0,
    "MODEL.MaskDINO.IMPORTANCE_SAMPLE_RATIO": 0.75,
    "MODEL.SWIN.PRETRAIN_IMG_SIZE": 224,
    "MODEL.SWIN.PATCH_SIZE": 4,
    "MODEL.SWIN.EMBED_DIM": 96,
    "MODEL.SWIN.DEPTHS": [2, 2, 6, 2],
    "MODEL.SWIN.NUM_HEADS": [3, 6, 12, 24],
    "MODEL.SWIN.WINDOW_SIZE": 7,
    "MODEL.SWIN.MLP_RATIO": 4.0,
    "MODEL.SWIN.QKV_BIAS": True,
    "MODEL.SWIN.QK_SCALE": None,
    "MODEL.SWIN.DROP_RATE": 0.0,
    "MODEL.SWIN.ATTN_DROP_RATE": 0.0,
    "MODEL.SWIN.DROP_PATH_RATE": 0.3,
    "MODEL.SWIN.APE": False,
    "MODEL.SWIN.PATCH_NORM": True,
}
# The type of the keys the converter reads that have no default.
REQUIRED_KEY_TYPES = {"MODEL.META_ARCHITECTURE": str, "MODEL.SEM_SEG_HEAD.NUM_CLASSES": int}
_REQUIRED = object()
_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string", list: "a list"}
_ITEM_NAMES = {bool: "true/false values", int: "integers", float: "numbers", str: "strings"}


def _where(cfg: dict, dotted: str) -> str:
    origin = getattr(cfg, "origins", {}).get(dotted)
    return f"{origin}: {dotted}" if origin is not None else dotted


def _has_type(value, expected: type) -> bool:
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def _check_type(cfg: dict, dotted: str, value, example) -> None:
    """Refuses a value whose type differs from the original default's (`example`, or a type), as detectron2 does,
    instead of letting `int()` truncate 0.5 or `bool()` read the string "false" as true."""
    if example is None:  # e.g. MODEL.SWIN.QK_SCALE: null or a number
        return
    expected = example if isinstance(example, type) else type(example)
    if not _has_type(value, expected):
        raise ConversionError(f"{_where(cfg, dotted)} is {value!r}; expected {_TYPE_NAMES[expected]}.")
    if expected is list and example:
        item_type = type(example[0])
        if not all(_has_type(item, item_type) for item in value):
            raise ConversionError(f"{_where(cfg, dotted)} is {value!r}; expected a list of {_ITEM_NAMES[item_type]}.")


def _get(cfg: dict, dotted: str, default=_REQUIRED):
    """`cfg[dotted]`, else `default`, else the original's default (`ORIGINAL_DEFAULTS`); a set value must have the
    default's type."""
    node = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            if default is not _REQUIRED:
                return default
            if dotted in ORIGINAL_DEFAULTS:
                return ORIGINAL_DEFAULTS[dotted]
            raise ConversionError(f"The config does not set {dotted}, which has no default.")
        node = node[part]
    if isinstance(node, UnevaluatedPythonTag):
        raise ConversionError(
            f"{_where(cfg, dotted)} is written as a Python expression ({node!r}); the converter does not evaluate "
            "code from config files. Replace it with its value."
        )
    if dotted in ORIGINAL_DEFAULTS:
        _check_type(cfg, dotted, node, ORIGINAL_DEFAULTS[dotted])
    elif dotted in REQUIRED_KEY_TYPES:
        _check_type(cfg, dotted, node, REQUIRED_KEY_TYPES[dotted])
    return node


def _stage_name(detectron2_name: str) -> str:
    """`res2`..`res5` -> `stage1`..`stage4`."""
    match = re.fullmatch(r"res([2-5])", detectron2_name)
    if match is None:
        raise ConversionError(f"Unknown backbone feature {detectron2_name!r}: expected res2..res5.")
    return f"stage{int(match.group(1)) - 1}"


RESNET_DEPTHS = {50: [3, 4, 6, 3], 101: [3, 4, 23, 3], 152: [3, 8, 36, 3]}


def _backbone_config(cfg: dict, out_features: list[str]):
    name = _get(cfg, "MODEL.BACKBONE.NAME")
    if name == "build_resnet_backbone":
        depth = _get(cfg, "MODEL.RESNETS.DEPTH")
        if depth not in RESNET_DEPTHS:
            raise ConversionError(f"MODEL.RESNETS.DEPTH={depth} is not supported: expected one of {list(RESNET_DEPTHS)}.")
        res2 = _get(cfg, "MODEL.RESNETS.RES2_OUT_CHANNELS")
        groups = _get(cfg, "MODEL.RESNETS.NUM_GROUPS")
        width = _get(cfg, "MODEL.RESNETS.WIDTH_PER_GROUP") * groups
        if groups != 1 or width * 4 != res2:
            raise ConversionError(
                f"Only plain bottleneck ResNets are supported (NUM_GROUPS 1, WIDTH_PER_GROUP = RES2_OUT_CHANNELS / 4); "
                f"got NUM_GROUPS={groups}, WIDTH_PER_GROUP={width // groups}, RES2_OUT_CHANNELS={res2}."
            )
        if _get(cfg, "MODEL.RESNETS.RES5_DILATION") != 1 or any(_get(cfg, "MODEL.RESNETS.DEFORM_ON_PER_STAGE")):
            raise ConversionError("Dilated or deformable ResNet stages are not supported.")
        if _get(cfg, "MODEL.RESNETS.STEM_TYPE") != "basic":
            raise ConversionError("Only the basic ResNet stem is supported.")
        return ResNetConfig(
            embedding_size=_get(cfg, "MODEL.RESNETS.STEM_OUT_CHANNELS"),
            hidden_sizes=[res2, res2 * 2, res2 * 4, res2 * 8],
            depths=RESNET_DEPTHS[depth],
            layer_type="bottleneck",
            hidden_act="relu",
            downsample_in_bottleneck=bool(_get(cfg, "MODEL.RESNETS.STRIDE_IN_1X1")),
            out_features=out_features,
        )
    if name == "D2SwinTransformer":
        if _get(cfg, "MODEL.SWIN.APE"):
            raise ConversionError("Swin with absolute position embeddings (MODEL.SWIN.APE) is not supported.")
        if not _get(cfg, "MODEL.SWIN.PATCH_NORM"):
            raise ConversionError("Swin without patch normalisation (MODEL.SWIN.PATCH_NORM False) is not supported.")
        if _get(cfg, "MODEL.SWIN.QK_SCALE") is not None:
            raise ConversionError("A custom Swin MODEL.SWIN.QK_SCALE is not supported.")
        return SwinConfig(
            image_size=_get(cfg, "MODEL.SWIN.PRETRAIN_IMG_SIZE"),
            patch_size=_get(cfg, "MODEL.SWIN.PATCH_SIZE"),
            embed_dim=_get(cfg, "MODEL.SWIN.EMBED_DIM"),
            depths=list(_get(cfg, "MODEL.SWIN.DEPTHS")),
            num_heads=list(_get(cfg, "MODEL.SWIN.NUM_HEADS")),
            window_size=_get(cfg, "MODEL.SWIN.WINDOW_SIZE"),
            mlp_ratio=float(_get(cfg, "MODEL.SWIN.MLP_RATIO")),
            qkv_bias=bool(_get(cfg, "MODEL.SWIN.QKV_BIAS")),
            hidden_dropout_prob=float(_get(cfg, "MODEL.SWIN.DROP_RATE")),
            attention_probs_dropout_prob=float(_get(cfg, "MODEL.SWIN.ATTN_DROP_RATE")),
            drop_path_rate=float(_get(cfg, "MODEL.SWIN.DROP_PATH_RATE")),
            out_features=out_features,
        )
    raise ConversionError(
        f"MODEL.BACKBONE.NAME={name!r} is not supported: expected 'build_resnet_backbone' or 'D2SwinTransformer'."
    )


_METADATA_LISTS = ("thing_classes", "stuff_classes")
_METADATA_MAPS = ("thing_dataset_id_to_contiguous_id", "stuff_dataset_id_to_contiguous_id")


def load_metadata(path: str | Path) -> dict:
    """Reads detectron2-style dataset metadata (a JSON object; see `labels_from_metadata`), checking the entries the
    converter uses."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Metadata file {path} does not exist.")
    try:
        metadata = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ConversionError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(metadata, dict):
        raise ConversionError(
            f"{path} holds a JSON {type(metadata).__name__}; expected an object with `thing_classes` and/or "
            f"`stuff_classes` (lists of names) and optional {' / '.join(f'`{k}`' for k in _METADATA_MAPS)}."
        )
    for key in _METADATA_LISTS:
        value = metadata.get(key)
        if value is not None and not (isinstance(value, list) and all(isinstance(name, str) for name in value)):
            raise ConversionError(f"{path}: `{key}` must be a list of class names, got {value!r:.200}.")
    for key in _METADATA_MAPS:
        value = metadata.get(key)
        if value is None:
            continue
        if not isinstance(value, dict) or not all(_has_type(v, int) for v in value.values()):
            raise ConversionError(
                f"{path}: `{key}` must map dataset ids to contiguous integer ids, got {value!r:.200}."
            )
    return metadata


def labels_from_metadata(
    metadata: dict, num_labels: int, source: str | Path = "the metadata"
) -> tuple[dict[int, str], list[int]]:
    """`id2label` and the stuff label ids from detectron2-style dataset metadata (read from `source`)."""
    thing_ids = set((metadata.get("thing_dataset_id_to_contiguous_id") or {}).values())
    stuff_ids = set((metadata.get("stuff_dataset_id_to_contiguous_id") or {}).values()) - thing_ids
    stuff_names = metadata.get("stuff_classes") or []
    thing_names = metadata.get("thing_classes") or []
    # detectron2 panoptic metadata lists every class in `stuff_classes`; instance metadata only things
    names = stuff_names if len(stuff_names) == num_labels else thing_names
    if len(names) != num_labels:
        raise ConversionError(
            f"{source}: neither `stuff_classes` ({len(stuff_names)} names) nor `thing_classes` ({len(thing_names)}) "
            f"names as many classes as the model has ({num_labels}, MODEL.SEM_SEG_HEAD.NUM_CLASSES)."
        )
    bad = sorted(i for i in stuff_ids | thing_ids if not 0 <= i < num_labels)
    if bad:
        raise ConversionError(
            f"{source}: the `*_dataset_id_to_contiguous_id` maps give contiguous ids {bad}, outside "
            f"0..{num_labels - 1}."
        )
    return {i: str(name) for i, name in enumerate(names)}, sorted(stuff_ids)


def labels_from_dataset(dataset: dict) -> tuple[dict[int, str], list[int]]:
    """`id2label` and the stuff label ids from one of our `conversion/datasets/*.json` label lists."""
    labels = dataset["labels"]
    if [label["id"] for label in labels] != list(range(len(labels))):
        raise ConversionError(f"The labels of {dataset.get('name')!r} must have ids 0..{len(labels) - 1} in order.")
    return {label["id"]: label["name"] for label in labels}, [label["id"] for label in labels if not label["isthing"]]


def config_from_detectron2(
    cfg: dict, metadata: dict | None = None, labels: tuple[dict[int, str], list[int]] | None = None
) -> MaskDinoConfig:
    """
    Builds a `MaskDinoConfig` from a merged detectron2 config dict. The label names and stuff labels come from
    detectron2-style dataset `metadata`, or from `labels` (`(id2label, stuff_label_ids)`), or are left generic.
    """
    if _get(cfg, "MODEL.META_ARCHITECTURE", None) is None or _get(cfg, "MODEL.SEM_SEG_HEAD.NUM_CLASSES", None) is None:
        raise ConversionError(
            "The config sets no MODEL.META_ARCHITECTURE or no MODEL.SEM_SEG_HEAD.NUM_CLASSES: it looks like a _BASE_ "
            "file (dataset, solver and input settings shared by several models). Pass the model's yaml, the one "
            "that names this file as its _BASE_."
        )
    if _get(cfg, "MODEL.META_ARCHITECTURE") != "MaskDINO":
        raise ConversionError(f"MODEL.META_ARCHITECTURE is {_get(cfg, 'MODEL.META_ARCHITECTURE')!r}, not 'MaskDINO'.")
    if _get(cfg, "MODEL.SEM_SEG_HEAD.NORM") != "GN":
        raise ConversionError("Only GroupNorm pixel decoders (MODEL.SEM_SEG_HEAD.NORM: GN) are supported.")
    if _get(cfg, "MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME") != "MaskDINOEncoder":
        raise ConversionError("Only the MaskDINOEncoder pixel decoder is supported.")
    if _get(cfg, "MODEL.MaskDINO.HIDDEN_DIM") % 4:
        raise ConversionError("MODEL.MaskDINO.HIDDEN_DIM must be divisible by 4.")

    in_features = list(_get(cfg, "MODEL.SEM_SEG_HEAD.IN_FEATURES"))
    encoder_features = list(_get(cfg, "MODEL.SEM_SEG_HEAD.DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES"))
    backbone_config = _backbone_config(cfg, [_stage_name(name) for name in sorted(in_features)])
    num_labels = int(_get(cfg, "MODEL.SEM_SEG_HEAD.NUM_CLASSES"))
    dn = str(_get(cfg, "MODEL.MaskDINO.DN"))
    if dn not in ("no", "standard", "seg"):
        raise ConversionError(f"MODEL.MaskDINO.DN={dn!r}: expected 'no', 'standard' or 'seg'.")
    box_init = str(_get(cfg, "MODEL.MaskDINO.INITIALIZE_BOX_TYPE"))
    box_init = {"no": "none"}.get(box_init, box_init)
    semantic_on = bool(_get(cfg, "MODEL.MaskDINO.TEST.SEMANTIC_ON"))
    panoptic_on = bool(_get(cfg, "MODEL.MaskDINO.TEST.PANOPTIC_ON"))
    norm = _get(cfg, "MODEL.RESNETS.NORM")
    noise_scale = float(_get(cfg, "MODEL.MaskDINO.DN_NOISE_SCALE"))

    kwargs = {}
    if metadata is not None and labels is not None:
        raise ConversionError("Pass either dataset metadata or labels, not both.")
    if metadata is not None:
        labels = labels_from_metadata(metadata, num_labels)
    if labels is not None:
        id2label, stuff_label_ids = labels
        if len(id2label) != num_labels:
            raise ConversionError(
                f"{len(id2label)} labels were given but the config has {num_labels} classes "
                "(MODEL.SEM_SEG_HEAD.NUM_CLASSES)."
            )
        kwargs.update(id2label=dict(id2label), stuff_label_ids=list(stuff_label_ids))
    else:
        kwargs.update(num_labels=num_labels)

    return MaskDinoConfig(
        backbone_config=backbone_config,
        freeze_backbone_batch_norm=norm == "FrozenBN" or _get(cfg, "MODEL.BACKBONE.NAME") == "D2SwinTransformer",
        hidden_dim=int(_get(cfg, "MODEL.MaskDINO.HIDDEN_DIM")),
        num_queries=int(_get(cfg, "MODEL.MaskDINO.NUM_OBJECT_QUERIES")),
        feature_size=int(_get(cfg, "MODEL.SEM_SEG_HEAD.CONVS_DIM")),
        mask_feature_size=int(_get(cfg, "MODEL.SEM_SEG_HEAD.MASK_DIM")),
        encoder_in_features=[_stage_name(name) for name in encoder_features],
        num_feature_levels=int(_get(cfg, "MODEL.SEM_SEG_HEAD.TOTAL_NUM_FEATURE_LEVELS")),
        encoder_low_resolution_first=_get(cfg, "MODEL.SEM_SEG_HEAD.FEATURE_ORDER") == "high2low",
        common_stride=int(_get(cfg, "MODEL.SEM_SEG_HEAD.COMMON_STRIDE")),
        encoder_layers=int(_get(cfg, "MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS")),
        encoder_ffn_dim=int(_get(cfg, "MODEL.SEM_SEG_HEAD.DIM_FEEDFORWARD")),
        # the original's encoder takes its heads from MaskDINO.NHEADS and always samples 4 points; the decoder
        # always uses 8 heads and 4 points
        encoder_attention_heads=int(_get(cfg, "MODEL.MaskDINO.NHEADS")),
        encoder_n_points=4,
        decoder_layers=int(_get(cfg, "MODEL.MaskDINO.DEC_LAYERS")),
        decoder_ffn_dim=int(_get(cfg, "MODEL.MaskDINO.DIM_FEEDFORWARD")),
        decoder_attention_heads=8,
        decoder_n_points=4,
        enforce_input_projection=bool(_get(cfg, "MODEL.MaskDINO.ENFORCE_INPUT_PROJ")),
        dropout=float(_get(cfg, "MODEL.MaskDINO.DROPOUT")),
        init_queries_from_encoder=bool(_get(cfg, "MODEL.MaskDINO.TWO_STAGE")),
        learnable_query_content=bool(_get(cfg, "MODEL.MaskDINO.LEARN_TGT")),
        initial_prediction=bool(_get(cfg, "MODEL.MaskDINO.INITIAL_PRED")),
        mask_enhanced_box_init=box_init,
        num_denoising=0 if dn == "no" else int(_get(cfg, "MODEL.MaskDINO.DN_NUM")),
        label_noise_ratio=noise_scale,
        box_noise_scale=noise_scale,
        denoise_masks=dn == "seg",
        use_semantic_cross_entropy=bool(_get(cfg, "MODEL.MaskDINO.SEMANTIC_CE_LOSS"))
        and semantic_on
        and not panoptic_on,
        class_weight=float(_get(cfg, "MODEL.MaskDINO.CLASS_WEIGHT")),
        mask_weight=float(_get(cfg, "MODEL.MaskDINO.MASK_WEIGHT")),
        dice_weight=float(_get(cfg, "MODEL.MaskDINO.DICE_WEIGHT")),
        box_weight=float(_get(cfg, "MODEL.MaskDINO.BOX_WEIGHT")),
        giou_weight=float(_get(cfg, "MODEL.MaskDINO.GIOU_WEIGHT")),
        no_object_weight=float(_get(cfg, "MODEL.MaskDINO.NO_OBJECT_WEIGHT")),
        class_cost=float(_get(cfg, "MODEL.MaskDINO.COST_CLASS_WEIGHT")),
        mask_cost=float(_get(cfg, "MODEL.MaskDINO.COST_MASK_WEIGHT")),
        dice_cost=float(_get(cfg, "MODEL.MaskDINO.COST_DICE_WEIGHT")),
        box_cost=float(_get(cfg, "MODEL.MaskDINO.COST_BOX_WEIGHT")),
        giou_cost=float(_get(cfg, "MODEL.MaskDINO.COST_GIOU_WEIGHT")),
        use_auxiliary_loss=bool(_get(cfg, "MODEL.MaskDINO.DEEP_SUPERVISION")),
        use_box_loss=bool(_get(cfg, "MODEL.MaskDINO.BOX_LOSS")),
        # PANO_BOX_LOSS=True is the original's decoupled box loss that leaves stuff boxes out
        supervise_stuff_boxes=not _get(cfg, "MODEL.MaskDINO.PANO_BOX_LOSS"),
        train_num_points=int(_get(cfg, "MODEL.MaskDINO.TRAIN_NUM_POINTS")),
        oversample_ratio=float(_get(cfg, "MODEL.MaskDINO.OVERSAMPLE_RATIO")),
        importance_sample_ratio=float(_get(cfg, "MODEL.MaskDINO.IMPORTANCE_SAMPLE_RATIO")),
        **kwargs,
    )


def image_processor_from_detectron2(cfg: dict, config: MaskDinoConfig) -> MaskDinoImageProcessor:
    """The processor with the dataset's test-time resize, the pixel statistics and the checkpoint's inference defaults."""
    if _get(cfg, "INPUT.FORMAT") != "RGB":
        raise ConversionError(
            f"INPUT.FORMAT={_get(cfg, 'INPUT.FORMAT')!r}: only RGB-trained checkpoints are supported (the processor "
            "feeds RGB images)."
        )
    return MaskDinoImageProcessor(
        size={
            "shortest_edge": int(_get(cfg, "INPUT.MIN_SIZE_TEST")),
            "longest_edge": int(_get(cfg, "INPUT.MAX_SIZE_TEST")),
        },
        image_mean=[float(v) for v in _get(cfg, "MODEL.PIXEL_MEAN")],
        image_std=[float(v) for v in _get(cfg, "MODEL.PIXEL_STD")],
        size_divisor=int(_get(cfg, "MODEL.MaskDINO.SIZE_DIVISIBILITY")) or 32,
        use_semantic_cross_entropy=config.use_semantic_cross_entropy,
        object_mask_threshold=float(_get(cfg, "MODEL.MaskDINO.TEST.OBJECT_MASK_THRESHOLD")),
        overlap_threshold=float(_get(cfg, "MODEL.MaskDINO.TEST.OVERLAP_THRESHOLD")),
        panoptic_temperature=float(_get(cfg, "MODEL.MaskDINO.TEST.PANO_TEMPERATURE")),
        apply_panoptic_temperature=bool(_get(cfg, "MODEL.MaskDINO.TEST.PANO_TRANSFORM_EVAL")),
        detections_per_image=int(_get(cfg, "TEST.DETECTIONS_PER_IMAGE")),
        stuff_label_ids=list(config.stuff_label_ids),
        # The original resizes mask logits to the output size before combining them with class scores when any
        # instance/panoptic inference is on, and otherwise (semantic-only models) combines at the padded size first.
        semantic_resize_mask_logits=bool(
            _get(cfg, "MODEL.MaskDINO.TEST.SEM_SEG_POSTPROCESSING_BEFORE_INFERENCE")
            or _get(cfg, "MODEL.MaskDINO.TEST.PANOPTIC_ON")
            or _get(cfg, "MODEL.MaskDINO.TEST.INSTANCE_ON")
        ),
    )


# ---- Checkpoint tensors -> our names ----

# Tensors the original stores that carry no weights of ours: detectron2's loss buffer and the aliases of the shared
# box head and decoder norm (checked equal to the tensor we keep).
ALIASES = {
    r"sem_seg_head\.predictor\.bbox_embed\.\d+\.(.*)": r"sem_seg_head.predictor._bbox_embed.\1",
    r"sem_seg_head\.predictor\.decoder\.bbox_embed\.\d+\.(.*)": r"sem_seg_head.predictor._bbox_embed.\1",
    r"sem_seg_head\.predictor\.decoder\.norm\.(.*)": r"sem_seg_head.predictor.decoder_norm.\1",
}


def _resnet_key(key: str) -> str | None:
    rules = [
        (r"backbone\.stem\.conv1\.weight", "model.backbone.embedder.embedder.convolution.weight"),
        (r"backbone\.stem\.conv1\.norm\.(\w+)", r"model.backbone.embedder.embedder.normalization.\1"),
        (r"backbone\.res(\d)\.(\d+)\.shortcut\.weight", "model.backbone.encoder.stages.{s}.layers.{b}.shortcut.convolution.weight"),
        (r"backbone\.res(\d)\.(\d+)\.shortcut\.norm\.(\w+)", "model.backbone.encoder.stages.{s}.layers.{b}.shortcut.normalization.{p}"),
        (r"backbone\.res(\d)\.(\d+)\.conv(\d)\.weight", "model.backbone.encoder.stages.{s}.layers.{b}.layer.{c}.convolution.weight"),
        (r"backbone\.res(\d)\.(\d+)\.conv(\d)\.norm\.(\w+)", "model.backbone.encoder.stages.{s}.layers.{b}.layer.{c}.normalization.{p}"),
    ]
    for pattern, target in rules:
        match = re.fullmatch(pattern, key)
        if match is None:
            continue
        if "{" not in target:
            return match.expand(target)
        groups = match.groups()
        fields = {"s": int(groups[0]) - 2, "b": groups[1]}
        if "{c}" in target:
            fields["c"] = int(groups[2]) - 1
            fields["p"] = groups[3] if len(groups) > 3 else None
        else:
            fields["p"] = groups[2] if len(groups) > 2 else None
        return target.format(**fields)
    return None


def _swin_key(key: str) -> str | None:
    rules = [
        (r"backbone\.patch_embed\.proj\.(\w+)", r"model.backbone.swin.embeddings.patch_embeddings.projection.\1"),
        (r"backbone\.patch_embed\.norm\.(\w+)", r"model.backbone.swin.embeddings.norm.\1"),
        (r"backbone\.layers\.(\d+)\.blocks\.(\d+)\.norm1\.(\w+)", r"model.backbone.swin.encoder.layers.\1.blocks.\2.layernorm_before.\3"),
        (r"backbone\.layers\.(\d+)\.blocks\.(\d+)\.norm2\.(\w+)", r"model.backbone.swin.encoder.layers.\1.blocks.\2.layernorm_after.\3"),
        (
            r"backbone\.layers\.(\d+)\.blocks\.(\d+)\.attn\.relative_position_bias_table",
            r"model.backbone.swin.encoder.layers.\1.blocks.\2.attention.relative_position_bias.relative_position_bias_table",
        ),
        (r"backbone\.layers\.(\d+)\.blocks\.(\d+)\.attn\.proj\.(\w+)", r"model.backbone.swin.encoder.layers.\1.blocks.\2.attention.o_proj.\3"),
        (r"backbone\.layers\.(\d+)\.blocks\.(\d+)\.mlp\.(fc\d)\.(\w+)", r"model.backbone.swin.encoder.layers.\1.blocks.\2.mlp.\3.\4"),
        (r"backbone\.layers\.(\d+)\.downsample\.(\w+)\.(\w+)", r"model.backbone.swin.encoder.layers.\1.downsample.\2.\3"),
    ]
    for pattern, target in rules:
        match = re.fullmatch(pattern, key)
        if match is not None:
            return match.expand(target)
    match = re.fullmatch(r"backbone\.norm(\d)\.(\w+)", key)
    if match is not None:
        return f"model.backbone.hidden_states_norms.stage{int(match.group(1)) + 1}.{match.group(2)}"
    return None


def _head_key(key: str, config: MaskDinoConfig) -> str | None:
    num_backbone_levels = len(config.encoder_in_features)

    def pixel_projection_index(match):
        index = int(match.group(1))
        # the original orders its backbone projections low2high: ascending stride; high2low: descending
        if index < num_backbone_levels and config.encoder_low_resolution_first:
            index = num_backbone_levels - 1 - index
        return f"model.pixel_decoder.input_projections.{index}.{match.group(2)}"

    prefix = "sem_seg_head.pixel_decoder."
    rules = [
        (prefix + r"input_proj\.(\d+)\.(\d\.\w+)", pixel_projection_index),
        (prefix + r"transformer\.level_embed", lambda m: "model.pixel_decoder.level_embed"),
        (prefix + r"transformer\.encoder\.layers\.(\d+)\.self_attn\.(\w+)\.(\w+)", r"model.pixel_decoder.encoder.layers.\1.self_attn.\2.\3"),
        (prefix + r"transformer\.encoder\.layers\.(\d+)\.norm1\.(\w+)", r"model.pixel_decoder.encoder.layers.\1.self_attn_layer_norm.\2"),
        (prefix + r"transformer\.encoder\.layers\.(\d+)\.norm2\.(\w+)", r"model.pixel_decoder.encoder.layers.\1.final_layer_norm.\2"),
        (prefix + r"transformer\.encoder\.layers\.(\d+)\.linear1\.(\w+)", r"model.pixel_decoder.encoder.layers.\1.mlp.fc1.\2"),
        (prefix + r"transformer\.encoder\.layers\.(\d+)\.linear2\.(\w+)", r"model.pixel_decoder.encoder.layers.\1.mlp.fc2.\2"),
        (prefix + r"mask_features\.(\w+)", r"model.pixel_decoder.mask_projection.\1"),
    ]
    predictor = "sem_seg_head.predictor."
    rules += [
        (predictor + r"enc_output\.(\w+)", r"model.encoder_output_projection.\1"),
        (predictor + r"enc_output_norm\.(\w+)", r"model.encoder_output_layernorm.\1"),
        (predictor + r"input_proj\.(\d+)\.(\w+)", r"model.input_projections.\1.\2"),
        (predictor + r"query_feat\.weight", "model.query_content_embeddings.weight"),
        (predictor + r"query_embed\.weight", "model.query_anchor_embeddings.weight"),
        (predictor + r"label_enc\.weight", "model.denoising_label_embeddings.weight"),
        (predictor + r"class_embed\.(\w+)", r"model.decoder.class_embed.\1"),
        (predictor + r"mask_embed\.layers\.(\d+)\.(\w+)", r"model.decoder.mask_embed.layers.\1.\2"),
        (predictor + r"_bbox_embed\.layers\.(\d+)\.(\w+)", r"model.decoder.bbox_embed.layers.\1.\2"),
        (predictor + r"decoder_norm\.(\w+)", r"model.decoder.layernorm.\1"),
        (predictor + r"decoder\.ref_point_head\.layers\.(\d+)\.(\w+)", r"model.decoder.query_position_head.layers.\1.\2"),
    ]
    layer = predictor + r"decoder\.layers\.(\d+)\."
    rules += [
        (layer + r"cross_attn\.(\w+)\.(\w+)", r"model.decoder.layers.\1.encoder_attn.\2.\3"),
        (layer + r"norm1\.(\w+)", r"model.decoder.layers.\1.encoder_attn_layer_norm.\2"),
        (layer + r"norm2\.(\w+)", r"model.decoder.layers.\1.self_attn_layer_norm.\2"),
        (layer + r"norm3\.(\w+)", r"model.decoder.layers.\1.final_layer_norm.\2"),
        (layer + r"linear1\.(\w+)", r"model.decoder.layers.\1.mlp.fc1.\2"),
        (layer + r"linear2\.(\w+)", r"model.decoder.layers.\1.mlp.fc2.\2"),
        (layer + r"self_attn\.out_proj\.(\w+)", r"model.decoder.layers.\1.self_attn.o_proj.\2"),
    ]
    for pattern, target in rules:
        match = re.fullmatch(pattern, key)
        if match is not None:
            return target(match) if callable(target) else match.expand(target)
    return None


def convert_state_dict(original: dict[str, torch.Tensor], config: MaskDinoConfig, num_fpn_levels: int):
    """
    Maps every tensor of an original checkpoint to our names.

    Returns:
        `(state_dict, unused)`: our tensors, and the original keys that mapped to nothing.
    """
    is_swin = config.backbone_config.model_type == "swin"
    converted, unused = {}, []
    for key, tensor in original.items():
        if key == "criterion.empty_weight":
            continue  # rebuilt from the config by the loss
        alias = next((re.sub(p, t, key) for p, t in ALIASES.items() if re.fullmatch(p, key)), None)
        if alias is not None:
            if alias not in original or not (original[alias] is tensor or torch.equal(original[alias], tensor)):
                raise ConversionError(f"{key} should be an alias of {alias} (one shared tensor), but it differs.")
            continue
        # the original's in_proj stacks (q, k, v); ours are three layers
        match = re.fullmatch(r"sem_seg_head\.predictor\.decoder\.layers\.(\d+)\.self_attn\.in_proj_(weight|bias)", key)
        if match is not None:
            for name, chunk in zip(("q_proj", "k_proj", "v_proj"), tensor.chunk(3, dim=0)):
                converted[f"model.decoder.layers.{match.group(1)}.self_attn.{name}.{match.group(2)}"] = chunk.clone()
            continue
        match = re.fullmatch(r"backbone\.layers\.(\d+)\.blocks\.(\d+)\.attn\.qkv\.(weight|bias)", key)
        if is_swin and match is not None:
            stage, block, kind = match.groups()
            for name, chunk in zip(("q_proj", "k_proj", "v_proj"), tensor.chunk(3, dim=0)):
                converted[f"model.backbone.swin.encoder.layers.{stage}.blocks.{block}.attention.{name}.{kind}"] = chunk.clone()
            continue
        if is_swin and re.fullmatch(r"backbone\.layers\.\d+\.blocks\.\d+\.attn\.relative_position_index", key):
            converted[key] = tensor  # checked against our recomputed buffer in `check_and_load`
            continue
        # FPN convs: adapter_k / layer_k belong to the k-th highest-resolution stage; ours run top-down
        match = re.fullmatch(r"sem_seg_head\.pixel_decoder\.(adapter|layer)_(\d+)\.(norm\.)?(\w+)", key)
        if match is not None:
            kind, k, norm, param = match.groups()
            index = num_fpn_levels - int(k)
            module = "lateral_convs" if kind == "adapter" else "output_convs"
            converted[f"model.pixel_decoder.{module}.{index}.{1 if norm else 0}.{param}"] = tensor
            continue
        target = _swin_key(key) if is_swin else _resnet_key(key)
        if target is None:
            target = _head_key(key, config)
        if target is None:
            unused.append(key)
        else:
            converted[target] = tensor
    return converted, unused


# Tensors of ours that no original checkpoint has, each with the reason it may stay at its initial value.
NOT_IN_ORIGINAL = {
    r"model\.backbone\.swin\.layernorm\.(weight|bias)": "Swin's final LayerNorm: computed by SwinModel, never reaches the backbone feature maps",
}


def relative_position_index_problems(model: torch.nn.Module, converted: dict[str, torch.Tensor]) -> list[str]:
    """Removes the original's Swin `relative_position_index` tables from `converted` and checks them against the
    model's own (recomputed) buffers."""
    problems = []
    buffers = dict(model.named_buffers())
    for key in [k for k in converted if k.endswith("attn.relative_position_index")]:
        tensor = converted.pop(key)
        stage, block = re.search(r"layers\.(\d+)\.blocks\.(\d+)", key).groups()
        ours = (
            f"model.backbone.swin.encoder.layers.{stage}.blocks.{block}.attention.relative_position_bias."
            "relative_position_index"
        )
        buffer = buffers.get(ours)
        if buffer is None or buffer.numel() != tensor.numel() or not torch.equal(buffer.to(tensor.dtype), tensor.flatten()):
            problems.append(f"{key} differs from our relative position index ({ours}).")
    return problems


def conversion_problems(
    expected: Mapping[str, torch.Size], converted: Mapping[str, torch.Tensor], unused: list[str]
) -> list[str]:
    """Unused checkpoint tensors, names the model does not have, model tensors left unfilled, shape mismatches."""
    problems = []
    if unused:
        problems.append("checkpoint tensors that map to nothing:\n  " + "\n  ".join(sorted(unused)))
    unexpected = sorted(set(converted) - set(expected))
    if unexpected:
        problems.append("mapped names the model does not have:\n  " + "\n  ".join(unexpected))
    missing = sorted(
        key
        for key in set(expected) - set(converted)
        if not key.endswith("num_batches_tracked") and not any(re.fullmatch(p, key) for p in NOT_IN_ORIGINAL)
    )
    if missing:
        problems.append("model tensors the checkpoint does not fill:\n  " + "\n  ".join(missing))
    mismatched = [
        f"{key}: checkpoint {tuple(tensor.shape)} vs model {tuple(expected[key])}"
        for key, tensor in converted.items()
        if key in expected and tuple(tensor.shape) != tuple(expected[key])
    ]
    if mismatched:
        problems.append("shape mismatches:\n  " + "\n  ".join(mismatched))
    return problems


def architecture_mismatches(original: Mapping[str, torch.Tensor], config: MaskDinoConfig) -> list[str]:
    """
    The main architecture settings read off the checkpoint's tensors that differ from `config`: a readable summary
    of why shapes do not match (e.g. a checkpoint trained with another config than the one given).
    """
    found = []

    def count(pattern):
        return len({m.group(1) for k in original if (m := re.fullmatch(pattern, k))})

    pixel, predictor = "sem_seg_head.pixel_decoder.", "sem_seg_head.predictor."
    checks = [
        ("encoder levels (num_feature_levels)", pixel + "transformer.level_embed", 0, config.num_feature_levels),
        ("encoder feed-forward width", pixel + "transformer.encoder.layers.0.linear1.weight", 0, config.encoder_ffn_dim),
        ("decoder feed-forward width", predictor + "decoder.layers.0.linear1.weight", 0, config.decoder_ffn_dim),
        ("class logits", predictor + "class_embed.weight", 0, config.num_class_logits),
        ("learned queries", predictor + "query_feat.weight", 0, config.num_queries),
    ]
    for what, key, dim, ours in checks:
        if key in original and original[key].shape[dim] != ours:
            found.append(f"{what}: checkpoint {original[key].shape[dim]} ({key}), config {ours}")
    for what, pattern, ours in (
        ("encoder layers", re.escape(pixel) + r"transformer\.encoder\.layers\.(\d+)\..*", config.encoder_layers),
        ("decoder layers", re.escape(predictor) + r"decoder\.layers\.(\d+)\..*", config.decoder_layers),
    ):
        theirs = count(pattern)
        if theirs and theirs != ours:
            found.append(f"{what}: checkpoint {theirs}, config {ours}")
    two_stage = predictor + "enc_output.weight" in original
    if any(k.startswith(predictor) for k in original) and two_stage != config.init_queries_from_encoder:
        found.append(
            f"query selection from the encoder (TWO_STAGE): checkpoint {two_stage}, config {config.init_queries_from_encoder}"
        )
    if found:
        return ["the checkpoint was not trained with this config:\n  " + "\n  ".join(found)]
    return []


def check_and_load(
    model: MaskDinoForUniversalSegmentation,
    converted: dict[str, torch.Tensor],
    unused: list[str],
    known_problems: list[str] | None = None,
):
    """Loads `converted` into `model`, refusing unused, missing or mis-shaped tensors (all listed at once)."""
    problems = list(known_problems or []) + relative_position_index_problems(model, converted)
    state = model.state_dict()
    problems += conversion_problems({k: v.shape for k, v in state.items()}, converted, unused)
    not_floating = sorted(
        f"{key} ({tensor.dtype})"
        for key, tensor in converted.items()
        if key in state and state[key].is_floating_point() and not tensor.is_floating_point()
    )
    if not_floating:
        problems.append(
            "integer or boolean tensors where the model has floating-point weights (load_state_dict would silently "
            "convert them):\n  " + "\n  ".join(not_floating)
        )
    if problems:
        raise ConversionError("Refusing to convert:\n" + "\n".join(problems))
    model.load_state_dict(converted, strict=False)


def load_original_state_dict(checkpoint: str | Path) -> dict[str, torch.Tensor]:
    """The model state dict of an original `.pth` checkpoint (read with `weights_only=True`). Refuses anything but
    a dict of finite tensors, naming the offending entries."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"Checkpoint {checkpoint} does not exist.")
    try:
        loaded = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises anything from KeyError to RuntimeError on a file it cannot parse
        raise ConversionError(
            f"{checkpoint} cannot be read as a PyTorch checkpoint with torch.load(weights_only=True): "
            f"{type(error).__name__}: {error}. Expected the original's .pth file (a dict with a 'model' state dict); "
            "the converter does not unpickle arbitrary objects."
        ) from error
    original = loaded.get("model", loaded) if isinstance(loaded, dict) else None
    if not isinstance(original, dict) or not original:
        raise ConversionError(
            f"{checkpoint} holds no state dict (expected a dict of tensors, or a dict with a 'model' entry), got "
            f"{type(original if isinstance(loaded, dict) else loaded).__name__}."
        )
    not_tensors = sorted(str(k) for k, v in original.items() if not isinstance(v, torch.Tensor))
    if not_tensors:
        raise ConversionError(f"{checkpoint}: these state dict entries are not tensors: {', '.join(not_tensors[:10])}")
    non_finite = sorted(k for k, v in original.items() if v.is_floating_point() and not torch.isfinite(v).all())
    if non_finite:
        raise ConversionError(
            f"{checkpoint} holds non-finite values (NaN or infinity) in {len(non_finite)} tensors: "
            f"{', '.join(non_finite[:10])}{' ...' if len(non_finite) > 10 else ''}. The checkpoint is corrupt or "
            "comes from a diverged training run."
        )
    return original


@dataclass
class ConversionResult:
    """A converted model and what the conversion did."""

    model: MaskDinoForUniversalSegmentation
    image_processor: MaskDinoImageProcessor
    num_checkpoint_tensors: int
    num_mapped: int
    num_aliases: int
    skipped: list[str] = field(default_factory=list)


def convert_checkpoint(
    cfg: dict,
    original: dict[str, torch.Tensor],
    metadata: dict | None = None,
    labels: tuple[dict[int, str], list[int]] | None = None,
) -> ConversionResult:
    """Converts an original state dict with its merged detectron2 config into our model and image processor."""
    config = config_from_detectron2(cfg, metadata, labels)
    config.architectures = ["MaskDinoForUniversalSegmentation"]
    image_processor = image_processor_from_detectron2(cfg, config)
    model = MaskDinoForUniversalSegmentation(config).eval()
    # The original's pixel statistics are non-persistent buffers; should a checkpoint hold them anyway, they must be
    # the config's (our image processor normalises with those).
    problems = []
    for key, config_key in (("pixel_mean", "MODEL.PIXEL_MEAN"), ("pixel_std", "MODEL.PIXEL_STD")):
        if key in original:
            expected = torch.tensor(_get(cfg, config_key), dtype=original[key].dtype)
            if not torch.allclose(original[key].flatten(), expected):
                problems.append(f"{key} in the checkpoint is {original[key].flatten().tolist()}, {config_key} is {expected.tolist()}")
    skipped = [k for k in original if k in ("criterion.empty_weight", "pixel_mean", "pixel_std")]
    kept = {k: v for k, v in original.items() if k not in ("pixel_mean", "pixel_std")}
    converted, unused = convert_state_dict(kept, config, len(model.model.pixel_decoder.fpn_features))
    num_mapped = len(converted)
    check_and_load(model, converted, unused, problems + architecture_mismatches(original, config))
    aliases = [k for k in original if any(re.fullmatch(p, k) for p in ALIASES)]
    return ConversionResult(
        model=model,
        image_processor=image_processor,
        num_checkpoint_tensors=len(original),
        num_mapped=num_mapped,
        num_aliases=len(aliases),
        skipped=skipped,
    )


def labels_from_metadata_file(cfg: dict, metadata_file: str | Path) -> tuple[dict[int, str], list[int]]:
    """`(id2label, stuff_label_ids)` from a detectron2-style dataset metadata JSON file, for the model of `cfg`."""
    return labels_from_metadata(load_metadata(metadata_file), config_from_detectron2(cfg).num_labels, metadata_file)


def convert(
    config_file: str | Path,
    checkpoint: str | Path,
    output_dir: str | Path | None = None,
    metadata_file: str | Path | None = None,
    *,
    remote_code: bool = True,
):
    """
    Converts `checkpoint` with `config_file` (and optional detectron2-style dataset metadata). Writes the model, its
    processor, a model card and (with `remote_code`) the code files for `trust_remote_code=True` to `output_dir`
    when given (all at once, see `staged_directory`), and returns `(model, image_processor)`.
    """
    cfg = load_detectron2_yaml(config_file)
    labels = labels_from_metadata_file(cfg, metadata_file) if metadata_file is not None else None
    result = convert_checkpoint(cfg, load_original_state_dict(checkpoint), labels=labels)
    if output_dir is not None:
        with staged_directory(output_dir) as staging:
            write_model_directory(result.model, result.image_processor, staging, remote_code=remote_code)
            check_reload(result.model, staging)
            from model_card import render_converted_card

            card = render_converted_card(
                result.model,
                repo_id=str(output_dir),
                checkpoint=Path(checkpoint),
                config_file=Path(config_file),
                metadata_file=Path(metadata_file) if metadata_file is not None else None,
                remote_code=remote_code,
                image_processor=result.image_processor,
            )
            (staging / "README.md").write_text(card)
    return result.model, result.image_processor


# ---- Writing the model directory ----

MODEL_CLASS = "modeling_maskdino.MaskDinoForUniversalSegmentation"
# All in `config.json`, the image processor's too. An `AutoImageProcessor` entry in `preprocessor_config.json` would
# make the image-segmentation pipeline look for a matching remote video processor (transformers 5.x infers one from it)
# and, with the package imported and no `trust_remote_code`, ask the user whether to run that code. Without
# `image_processor_type` in `preprocessor_config.json`, `AutoImageProcessor` reads the model config instead: the
# installed package's registered processor when it is imported, else this entry.
CONFIG_AUTO_MAP = {
    "AutoConfig": "configuration_maskdino.MaskDinoConfig",
    "AutoModel": "modeling_maskdino.MaskDinoModel",
    "AutoModelForUniversalSegmentation": MODEL_CLASS,
    # the image-segmentation pipeline loads through this one
    "AutoModelForImageSegmentation": MODEL_CLASS,
    "AutoModelForObjectDetection": MODEL_CLASS,
    "AutoImageProcessor": {
        "pil": "image_processing_pil_maskdino.MaskDinoImageProcessorPil",
        "torchvision": "image_processing_maskdino.MaskDinoImageProcessor",
    },
}


def remote_code_files() -> list[Path]:
    """The package files written beside the weights, after checking that their relative imports stay among them."""
    package_dir = Path(transformers_maskdino.__file__).resolve().parent
    files = [package_dir / f"{name}.py" for name in REMOTE_CODE_MODULES]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            relative = isinstance(node, ast.ImportFrom) and node.level > 0
            if relative and (node.level != 1 or node.module not in REMOTE_CODE_MODULES):
                raise ConversionError(
                    f"{path.name} imports `{'.' * node.level}{node.module or ''}`: Hub remote code needs single-dot "
                    f"imports of the modules shipped beside the weights ({', '.join(REMOTE_CODE_MODULES)})."
                )
    return files


def write_remote_code(output_dir: str | Path) -> None:
    """Points the Auto classes at the package's modules (see `CONFIG_AUTO_MAP`) and copies them beside the weights
    (`sync_remote_code`, which also keeps later `save_pretrained` calls into a copy of this directory loadable)."""
    remote_code_files()  # their imports stay among the shipped modules
    _update_json(Path(output_dir) / "config.json", lambda content: content.update(auto_map=dict(CONFIG_AUTO_MAP)))
    sync_remote_code(output_dir)


def _update_json(path: Path, update) -> None:
    with open(path) as f:
        content = json.load(f)
    update(content)
    with open(path, "w") as f:
        json.dump(content, f, indent=2, sort_keys=True)
        f.write("\n")


def write_model_directory(
    model: MaskDinoForUniversalSegmentation,
    image_processor: MaskDinoImageProcessor,
    output_dir: str | Path,
    remote_code: bool = True,
) -> None:
    """Writes the model (`save_pretrained`), its image processor and (with `remote_code`) the files
    `trust_remote_code=True` loads."""
    model.save_pretrained(output_dir)
    image_processor.save_pretrained(output_dir)
    if remote_code:
        write_remote_code(output_dir)


def check_reload(model: MaskDinoForUniversalSegmentation, directory: Path) -> MaskDinoForUniversalSegmentation:
    """Reloads `directory` and refuses it unless it gives back every tensor of `model` exactly."""
    reloaded = MaskDinoForUniversalSegmentation.from_pretrained(directory).eval()
    expected_state, reloaded_state = model.state_dict(), reloaded.state_dict()
    differing = [k for k, v in expected_state.items() if k not in reloaded_state or not torch.equal(v, reloaded_state[k])]
    if differing:
        raise ConversionError(f"The written model does not reload identically; differing tensors: {differing[:10]}")
    return reloaded


# What a conversion writes (and sharded weights): a directory holding only these may be replaced by a new conversion.
CONVERSION_FILES = frozenset(
    (
        "config.json",
        "model.safetensors",
        "model.safetensors.index.json",
        "preprocessor_config.json",
        "README.md",
        *(f"{m}.py" for m in REMOTE_CODE_MODULES),
    )
)
_STAGING_INFIX = ".partial-"


def _remove_abandoned_staging(output_dir: Path) -> None:
    """Deletes the staging directories of conversions into `output_dir` whose process is gone (killed runs)."""
    for path in output_dir.parent.glob(f".{glob.escape(output_dir.name)}{_STAGING_INFIX}*"):
        pid = path.name[len(output_dir.name) + 1 + len(_STAGING_INFIX) :].split("-", 1)[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except PermissionError:
            pass  # another user's live process


@contextlib.contextmanager
def staged_directory(output_dir: str | Path):
    """
    Yields an empty staging directory beside `output_dir` (hidden, named `.<name>.partial-<pid>-...`). When the
    block completes, the staging directory replaces `output_dir` by renames; when it fails, is interrupted or killed,
    `output_dir` is left as it was and the staging directory is deleted (by the next conversion, after a kill). An
    existing `output_dir` is only replaced when it holds nothing but the files of a conversion (`CONVERSION_FILES`).
    """
    output_dir = Path(output_dir)
    if output_dir.exists():
        if not output_dir.is_dir():
            raise ConversionError(f"{output_dir} exists and is not a directory.")
        others = sorted(
            p.name
            for p in output_dir.iterdir()
            if p.name not in CONVERSION_FILES and not re.fullmatch(r"model-\d+-of-\d+\.safetensors", p.name)
        )
        if others:
            raise ConversionError(
                f"Refusing to replace {output_dir}: it holds {', '.join(others[:10])}, which a conversion does not "
                "write. Choose a new or empty --output-dir."
            )
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_staging(output_dir)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}{_STAGING_INFIX}{os.getpid()}-", dir=output_dir.parent))
    try:
        yield staging
        if output_dir.exists() and any(output_dir.iterdir()):
            previous = staging.with_name(staging.name.replace(_STAGING_INFIX, ".previous-", 1))
            os.rename(output_dir, previous)
            os.rename(staging, output_dir)
            shutil.rmtree(previous)
        else:
            os.replace(staging, output_dir)  # replaces an empty directory in one step
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---- Verification against outputs saved from the original ----

VERIFY_TOLERANCE = 1e-4
_PREDICTION_FIELDS = {"pred_logits": "class_queries_logits", "pred_masks": "masks_queries_logits", "pred_boxes": "pred_boxes"}


@dataclass
class VerifyReport:
    """Per-key max |ours - original| and the keys that fail `difference <= tolerance * max(1, max |original|)`."""

    differences: dict[str, float]
    failures: list[str]
    ignored: list[str]

    @property
    def ok(self) -> bool:
        return not self.failures


def _our_prediction(outputs, key: str) -> torch.Tensor | None:
    match = re.fullmatch(r"decoder\.(?:(aux)\.(\d+)\.|(interm)\.)?(pred_logits|pred_masks|pred_boxes)", key)
    if match is None:
        return None
    aux, index, interm, name = match.groups()
    field_name = _PREDICTION_FIELDS[name]
    if aux:
        auxiliary = outputs.auxiliary_outputs or []
        return auxiliary[int(index)].get(field_name) if int(index) < len(auxiliary) else None
    if interm:
        return (outputs.encoder_proposal_outputs or {}).get(field_name)
    return getattr(outputs, field_name)


def verify_outputs(model, outputs_file: str | Path, tolerance: float = VERIFY_TOLERANCE) -> VerifyReport:
    """
    Runs `model` on the `pixel_values` stored in `outputs_file` and compares every `decoder.*` prediction stored there
    (format in `conversion/README.md`). Other keys are ignored and reported.
    """
    from safetensors.torch import load_file

    reference = load_file(str(outputs_file))
    if "pixel_values" not in reference:
        raise ConversionError(
            f"{outputs_file} has no `pixel_values`: it must hold the exact normalised, padded tensor the original "
            "model was run on, next to its `decoder.*` outputs."
        )
    required = {"decoder.pred_logits", "decoder.pred_masks", "decoder.pred_boxes"}
    if not required <= set(reference):
        raise ConversionError(f"{outputs_file} lacks {sorted(required - set(reference))}; expected at least {sorted(required)}.")
    parameter = next(model.parameters())
    with torch.no_grad():
        outputs = model.eval()(
            reference["pixel_values"].to(parameter.device, parameter.dtype), output_auxiliary_logits=True
        )
    differences, failures, ignored = {}, [], []
    for key in sorted(reference):
        if key == "pixel_values" or not key.startswith("decoder."):
            if key != "pixel_values":
                ignored.append(key)
            continue
        ours = _our_prediction(outputs, key)
        expected = reference[key]
        if ours is None:
            failures.append(f"{key}: the converted model produces no such output")
            continue
        if tuple(ours.shape) != tuple(expected.shape):
            failures.append(f"{key}: shape {tuple(ours.shape)} vs original {tuple(expected.shape)}")
            continue
        difference = (ours.float().cpu() - expected.float()).abs().max().item()
        differences[key] = difference
        bound = tolerance * max(1.0, expected.abs().max().item())
        if not difference <= bound:
            failures.append(f"{key}: max |ours - original| = {difference:.3e} > {bound:.1e}")
    return VerifyReport(differences, failures, ignored)


# ---- Downloading and pushing ----


def download_checkpoint(
    url: str, destination: str | Path, progress: bool = True, expected_sha256: str | None = None
) -> Path:
    """
    Downloads `url` (http(s) or file) to `destination` with a progress bar, through a `.partial` file renamed once
    complete. An existing `destination` is reused. With `expected_sha256`, the file must have that digest.
    """
    from tqdm.auto import tqdm

    destination = Path(destination)
    if not destination.is_file():
        destination.parent.mkdir(parents=True, exist_ok=True)
        partial = destination.with_name(destination.name + ".partial")
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as f:
                total = response.headers.get("Content-Length")
                with tqdm(
                    total=int(total) if total else None,
                    unit="B",
                    unit_scale=True,
                    desc=f"Downloading {destination.name}",
                    disable=not progress,
                ) as bar:
                    for block in iter(lambda: response.read(1 << 20), b""):
                        f.write(block)
                        bar.update(len(block))
        except (urllib.error.URLError, OSError) as error:
            partial.unlink(missing_ok=True)
            raise ConversionError(
                f"Could not download {url}: {error}. Download it by other means and pass --checkpoint FILE."
            ) from error
        os.replace(partial, destination)
    if expected_sha256 is not None:
        digest = sha256_of(destination)
        if digest != expected_sha256:
            raise ConversionError(
                f"{destination} has sha256 {digest}, but the release's is {expected_sha256}: the file is corrupt or "
                "not the released checkpoint. Delete it and retry."
            )
    return destination


def push_to_hub(
    folder: str | Path,
    repo_id: str,
    commit_message: str,
    commit_description: str | None = None,
    token: str | None = None,
    private: bool | None = None,
    create_pr: bool = False,
):
    """
    Creates `repo_id` if needed and uploads `folder` in one commit with `huggingface_hub`'s `upload_folder`. Needs a
    token with write access: `token`, or the one `huggingface_hub` finds (`HF_TOKEN`, `hf auth login`).
    """
    from huggingface_hub import HfApi, get_token

    token = token or get_token()
    if not token:
        raise ConversionError(
            "--push-to-hub needs a Hugging Face token with write access: run `hf auth login`, set HF_TOKEN, or pass "
            "--token."
        )
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    return api.upload_folder(
        repo_id=repo_id,
        repo_type="model",
        folder_path=str(folder),
        commit_message=commit_message,
        commit_description=commit_description,
        create_pr=create_pr,
    )


def _parse_args(argv):
    from released import RELEASED

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-name", choices=sorted(RELEASED), help="one of the released checkpoints (see "
                        "--list-models).")
    parser.add_argument("--config-file", help="detectron2 yaml of the checkpoint (follows _BASE_); with --model-name "
                        "it replaces the table's config (labels, processor and card still come from the table).")
    parser.add_argument("--list-models", action="store_true", help="list the released checkpoints and exit.")
    parser.add_argument("--add-remote-code", metavar="DIR", help="only add the code files and auto_map for "
                        "trust_remote_code=True to a directory saved with save_pretrained (e.g. a model trained from "
                        "scratch), and exit.")
    parser.add_argument("--checkpoint", help="local original .pth (required with --config-file; with --model-name it "
                        "replaces the download).")
    parser.add_argument("--checkpoint-url", help="with --model-name: download from this URL (http(s) or file) instead "
                        "of the release's.")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR, help="where downloads are kept "
                        f"(default {DEFAULT_CACHE_DIR}).")
    parser.add_argument("--output-dir", help="directory to write the converted model to.")
    parser.add_argument("--metadata", help="with --config-file: detectron2-style dataset metadata JSON (class names, "
                        "thing/stuff id maps) for id2label and the stuff labels.")
    parser.add_argument("--verify", help="safetensors file of outputs saved from the original (pixel_values and "
                        "decoder.* predictions, see conversion/README.md); the written model must reproduce them.")
    parser.add_argument("--verify-tolerance", type=float, default=VERIFY_TOLERANCE, help="allowed max |ours - "
                        "original| relative to max(1, max |original|) (default %(default)s).")
    parser.add_argument("--push-to-hub", metavar="ORG/REPO", help="upload the directory to this Hub model repo "
                        "(needs a write token: `hf auth login`, HF_TOKEN or --token).")
    parser.add_argument("--token", help="Hugging Face token for --push-to-hub (default: the saved or HF_TOKEN one).")
    parser.add_argument("--private", action="store_true", help="with --push-to-hub: create the repo as private.")
    parser.add_argument("--create-pr", action="store_true", help="with --push-to-hub: open a pull request instead of "
                        "committing to main.")
    parser.add_argument("--no-remote-code", action="store_true", help="do not write the code files and auto_map for "
                        "trust_remote_code=True.")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars.")
    args = parser.parse_args(argv)
    if args.list_models or args.add_remote_code:
        return args
    if not args.model_name and not args.config_file:
        parser.error("give --model-name (a released checkpoint) or --config-file with --checkpoint.")
    if not args.output_dir:
        parser.error("--output-dir is required.")
    if args.config_file and not args.model_name and not args.checkpoint:
        parser.error("--config-file needs --checkpoint (the original .pth).")
    if args.checkpoint_url and not args.model_name:
        parser.error("--checkpoint-url only applies with --model-name.")
    if args.metadata and not args.config_file:
        parser.error("--metadata only applies with --config-file (released models use conversion/datasets/).")
    return args


def _list_models() -> None:
    from released import RELEASED

    for entry in RELEASED.values():
        print(f"{entry.name:48s} {', '.join(entry.tasks):38s} {entry.file_name}")


@dataclass
class _Source:
    checkpoint: Path
    config_file: Path
    cfg: dict
    entry: object | None = None  # released.ReleasedCheckpoint
    dataset: dict | None = None
    labels: tuple[dict[int, str], list[int]] | None = None
    metadata_file: Path | None = None


def _resolve_source(args) -> _Source:
    """The checkpoint file (downloaded if needed), its config, and where its labels come from."""
    if not args.model_name:
        config_file = Path(args.config_file)
        cfg = load_detectron2_yaml(config_file)
        labels = labels_from_metadata_file(cfg, args.metadata) if args.metadata else None
        metadata_file = Path(args.metadata) if args.metadata else None
        return _Source(Path(args.checkpoint), config_file, cfg, labels=labels, metadata_file=metadata_file)

    from released import get_released

    entry = get_released(args.model_name)
    config_file = Path(args.config_file) if args.config_file else entry.config_path
    cfg = load_detectron2_yaml(config_file)
    if args.checkpoint:
        checkpoint = Path(args.checkpoint)
    else:
        url = args.checkpoint_url or entry.url
        checkpoint = download_checkpoint(url, args.cache_dir / entry.file_name, not args.no_progress, entry.sha256)
    dataset = entry.load_dataset()
    resize = image_processor_from_detectron2(cfg, config_from_detectron2(cfg)).size
    expected = dataset["test_resize"]
    if (resize["shortest_edge"], resize["longest_edge"]) != (expected["shortest_edge"], expected["longest_edge"]):
        raise ConversionError(
            f"{config_file} resizes to {dict(resize)} but datasets/{entry.dataset}.json says {expected}; fix the data "
            "so they agree."
        )
    return _Source(checkpoint, config_file, cfg, entry, dataset, labels_from_dataset(dataset))


def _verify(reloaded, args) -> str:
    report = verify_outputs(reloaded, args.verify, args.verify_tolerance)
    for key, difference in report.differences.items():
        print(f"  verify {key}: max |ours - original| = {difference:.3e}")
    if report.ignored:
        print(f"  verify: ignored keys {', '.join(report.ignored)}")
    if not report.ok:
        raise SystemExit(
            "Verification failed (nothing written, nothing pushed):\n  " + "\n  ".join(report.failures)
        )
    print(f"Verified:    {len(report.differences)} outputs match {args.verify} within {args.verify_tolerance:g}")
    return (
        f"{len(report.differences)} outputs of the original on one image, max difference "
        f"{max(report.differences.values()):.1e}"
    )


def main(argv=None):
    args = _parse_args(argv)
    if args.list_models:
        _list_models()
        return
    if args.add_remote_code:
        write_remote_code(args.add_remote_code)
        print(f"Added the remote code files and auto_map to {args.add_remote_code}")
        return
    if args.no_progress:
        transformers.utils.logging.disable_progress_bar()
    output_dir = Path(args.output_dir)
    source = _resolve_source(args)
    source_sha256 = sha256_of(source.checkpoint)
    result = convert_checkpoint(source.cfg, load_original_state_dict(source.checkpoint), labels=source.labels)
    model = result.model
    print(f"Source:      {source.checkpoint} (sha256 {source_sha256})")
    print(f"Config:      {source.config_file}")
    print(
        f"Tensors:     {result.num_checkpoint_tensors} in the checkpoint: {result.num_mapped} mapped to "
        f"{len(model.state_dict())} model tensors, {result.num_aliases} aliases of the shared box head and decoder "
        f"norm, {len(result.skipped)} skipped ({', '.join(result.skipped) or 'none'})"
    )
    print(f"Parameters:  {model.num_parameters():,}")

    # everything is written and checked in a staging directory that replaces output_dir only once complete
    with staged_directory(output_dir) as staging:
        write_model_directory(model, result.image_processor, staging, remote_code=not args.no_remote_code)
        # reload what was written: the directory must give back every tensor
        reloaded = check_reload(model, staging)
        verification = _verify(reloaded, args) if args.verify else None
        repo_id = args.push_to_hub or (source.entry.name if source.entry is not None else str(output_dir))
        if source.entry is not None:
            from model_card import render_model_card

            card = render_model_card(
                source.entry,
                source.dataset,
                repo_id=repo_id,
                num_parameters=model.num_parameters(),
                source_sha256=source_sha256,
                config_name=None if source.config_file == source.entry.config_path else source.config_file.name,
                object_mask_threshold=result.image_processor.object_mask_threshold,
                overlap_threshold=result.image_processor.overlap_threshold,
                verification=verification,
            )
        else:
            from model_card import render_converted_card

            card = render_converted_card(
                model,
                repo_id=repo_id,
                checkpoint=source.checkpoint,
                config_file=source.config_file,
                metadata_file=source.metadata_file,
                source_sha256=source_sha256,
                verification=verification,
                remote_code=not args.no_remote_code,
                image_processor=result.image_processor,
            )
        (staging / "README.md").write_text(card)
    print(f"Written:     {output_dir} (model.safetensors sha256 {sha256_of(output_dir / 'model.safetensors')}); reload OK")
    print(f"Card:        {output_dir / 'README.md'}")

    if args.push_to_hub:
        source_name = source.entry.file_name if source.entry is not None else source.checkpoint.name
        commit = push_to_hub(
            output_dir,
            args.push_to_hub,
            commit_message=f"Add Mask DINO converted from {source_name}",
            commit_description=f"Converted from the original checkpoint {source_name} (sha256 {source_sha256}) "
            f"with config {source.config_file.name} by conversion/convert_maskdino_to_hf.py.",
            token=args.token,
            private=args.private or None,
            create_pr=args.create_pr,
        )
        print(f"Pushed:      {getattr(commit, 'commit_url', commit)}")


if __name__ == "__main__":
    try:
        main()
    except (ConversionError, FileNotFoundError) as error:
        raise SystemExit(f"error: {error}") from None

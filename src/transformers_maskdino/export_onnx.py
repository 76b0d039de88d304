# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""ONNX export of [`MaskDinoForUniversalSegmentation`]: `pixel_values` in, `class_queries_logits`,
`masks_queries_logits` and `pred_boxes` out, with dynamic batch size, height and width (multiples of 32).

    python -m transformers_maskdino.export_onnx CHECKPOINT_DIR model.onnx [--opset 18]

The export works with the default `MASKDINO_KERNELS` setting: while exporting, the model uses the pure-PyTorch
(`grid_sample`) deformable attention, which the ONNX exporters translate. Run the graph with onnxruntime (or OpenVINO)
and post-process its numpy outputs with [`OnnxOutputs`] and the image processor, see docs/deployment.md.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .modeling_maskdino import MaskDinoForUniversalSegmentation

INPUT_NAMES = ("pixel_values",)
OUTPUT_NAMES = ("class_queries_logits", "masks_queries_logits", "pred_boxes")
DEFAULT_OPSET = 18


class MaskDinoOnnxWrapper(nn.Module):
    """The model with a plain tensor signature: `pixel_values` -> (class logits, mask logits, boxes)."""

    def __init__(self, model: MaskDinoForUniversalSegmentation):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        outputs = self.model(pixel_values=pixel_values)
        return outputs.class_queries_logits, outputs.masks_queries_logits, outputs.pred_boxes


def dynamic_shapes(max_size: int = 4096) -> dict:
    """`torch.export` dynamic shapes of `pixel_values`: any batch size, height and width multiples of 32."""
    batch = torch.export.Dim("batch_size", min=1, max=1024)
    height = 32 * torch.export.Dim("height_32", min=2, max=max_size // 32)
    width = 32 * torch.export.Dim("width_32", min=2, max=max_size // 32)
    return {"pixel_values": {0: batch, 2: height, 3: width}}


def export_onnx(
    model: MaskDinoForUniversalSegmentation | str | Path,
    output_path: str | Path,
    opset: int = DEFAULT_OPSET,
    sample_size: tuple[int, int] = (128, 160),
) -> Path:
    """
    Exports `model` (or the checkpoint directory it names) to `output_path` with the dynamo ONNX exporter.

    Args:
        model: a [`MaskDinoForUniversalSegmentation`] or a directory `from_pretrained` reads.
        output_path: the `.onnx` file to write (weights inline).
        opset: ONNX opset (18 by default; onnxruntime and OpenVINO run it).
        sample_size: (height, width) of the example input traced, multiples of 32. The graph accepts any size.

    Returns:
        The path written.
    """
    if not isinstance(model, nn.Module):
        model = MaskDinoForUniversalSegmentation.from_pretrained(model)
    if sample_size[0] % 32 or sample_size[1] % 32:
        raise ValueError(f"`sample_size` must be multiples of 32, got {sample_size}.")
    model = model.eval()
    parameter = next(model.parameters())
    # not a batch of 1, which the exporter specialises
    sample = torch.zeros(3, model.config.num_channels, *sample_size, dtype=parameter.dtype, device=parameter.device)
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        program = torch.onnx.export(
            MaskDinoOnnxWrapper(model).eval(),
            (sample,),
            input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES),
            dynamic_shapes=dynamic_shapes(),
            opset_version=opset,
            dynamo=True,
            external_data=False,
        )
    program.save(str(output_path))
    return output_path


@dataclass
class OnnxOutputs:
    """
    The ONNX graph's outputs (numpy arrays or tensors) in the form the image processor's `post_process_*` methods
    read. `image_sizes` are the (height, width) of the valid (unpadded) region of each image, as the processor
    returns them in `pixel_mask`; without them the whole padded input counts as image.
    """

    class_queries_logits: np.ndarray | torch.Tensor
    masks_queries_logits: np.ndarray | torch.Tensor
    pred_boxes: np.ndarray | torch.Tensor
    image_sizes: np.ndarray | torch.Tensor | None = None

    def __post_init__(self):
        self.class_queries_logits = torch.as_tensor(self.class_queries_logits)
        self.masks_queries_logits = torch.as_tensor(self.masks_queries_logits)
        self.pred_boxes = torch.as_tensor(self.pred_boxes)
        batch_size = self.class_queries_logits.shape[0]
        # the mask logits are at stride 4 of the padded input
        padded = torch.tensor(self.masks_queries_logits.shape[-2:], dtype=torch.long) * 4
        self.padded_image_sizes = padded[None].expand(batch_size, -1)
        if self.image_sizes is None:
            self.image_sizes = self.padded_image_sizes
        else:
            self.image_sizes = torch.as_tensor(self.image_sizes, dtype=torch.long)

    @classmethod
    def from_session_outputs(cls, outputs, pixel_mask=None) -> OnnxOutputs:
        """From `session.run(None, ...)`'s list (in `OUTPUT_NAMES` order) and the processor's `pixel_mask`."""
        image_sizes = None
        if pixel_mask is not None:
            mask = torch.as_tensor(np.asarray(pixel_mask)).bool()
            image_sizes = torch.stack([mask.any(2).sum(1), mask.any(1).sum(1)], dim=1)
        return cls(*outputs[:3], image_sizes=image_sizes)

    def __getitem__(self, key):
        return getattr(self, key)

    def get(self, key, default=None):
        return getattr(self, key, default)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m transformers_maskdino.export_onnx",
        description="Export a Mask DINO checkpoint to ONNX (dynamic batch, height and width).",
    )
    parser.add_argument("checkpoint", help="directory of a MaskDinoForUniversalSegmentation checkpoint")
    parser.add_argument("output", help="the .onnx file to write")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    parser.add_argument(
        "--sample-size",
        type=int,
        nargs=2,
        default=(128, 160),
        metavar=("HEIGHT", "WIDTH"),
        help="size of the traced example input (multiples of 32); the graph accepts any size",
    )
    args = parser.parse_args(argv)
    path = export_onnx(args.checkpoint, args.output, opset=args.opset, sample_size=tuple(args.sample_size))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

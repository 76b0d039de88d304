# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""Image processor for Mask DINO on the torchvision backend: the same preprocessing, targets and post-processing as
[`MaskDinoImageProcessorPil`], on tensors and on the GPU (`device=`). What both backends share is in
`image_processing_pil_maskdino` ([`MaskDinoImageProcessingMixin`]) and `post_processing_maskdino`."""

import torch
from transformers.image_processing_backends import TorchvisionBackend
from transformers.image_transforms import group_images_by_shape, reorder_images
from transformers.image_utils import PILImageResampling, SizeDict
from transformers.utils import is_torchvision_available

from .image_processing_pil_maskdino import MaskDinoImageProcessingMixin, interpolate_float_images
from .post_processing_maskdino import MaskDinoPostProcessingMixin


class MaskDinoImageProcessor(MaskDinoImageProcessingMixin, MaskDinoPostProcessingMixin, TorchvisionBackend):
    r"""
    Image processor for Mask DINO on the torchvision backend, the default of `AutoImageProcessor` where torchvision
    is installed. It takes the same arguments and images as [`MaskDinoImageProcessorPil`] (see
    [`MaskDinoImageProcessingMixin`]), also CUDA tensors, and with `device="cuda"` it processes on the GPU.

    Results equal the PIL backend's except where a uint8 image is resized: the sizes follow the original's rounding
    in both, but torchvision's antialiased bilinear kernel differs from PIL's by at most one grey level (1/255) on a
    few pixels (see `tests/test_image_processing.py`). Float images are resized with the same `F.interpolate` call
    in both; training targets are computed by the same NumPy code; post-processing is shared.
    """

    def __init__(self, **kwargs) -> None:
        if not is_torchvision_available():
            raise ImportError(
                "MaskDinoImageProcessor is the torchvision backend and needs torchvision, which is not installed. "
                "Install it (`pip install torchvision`), or use MaskDinoImageProcessorPil, the PIL backend (which "
                "AutoImageProcessor picks where torchvision is absent)."
            )
        super().__init__(**kwargs)

    def resize(
        self,
        image: torch.Tensor,
        size: SizeDict,
        resample: PILImageResampling | None = None,
        **kwargs,
    ) -> torch.Tensor:
        """
        Resize `(..., channels, height, width)` images. `size` is `{"shortest_edge", "longest_edge"}` (the original's
        test-time resize, see [`get_resize_output_size`]) or `{"height", "width"}`. uint8 images are resized with
        torchvision's antialiased kernels (PIL's filters, as the original uses PIL); other images with
        `F.interpolate`, as the original does (see [`interpolate_float_images`]).
        """
        new_size = self._output_size(image.shape[-2:], size)
        if tuple(image.shape[-2:]) == new_size:
            return image
        resample = PILImageResampling(resample if resample is not None else self.resample)
        if image.dtype == torch.uint8:
            return super().resize(image, SizeDict(height=new_size[0], width=new_size[1]), resample, antialias=True)
        return interpolate_float_images(image, new_size, resample)

    def _resize_and_normalize(
        self, images: list[torch.Tensor], size, resample, rescale_factor, image_mean, image_std, disable_grouping
    ) -> list[torch.Tensor]:
        """The images resized (`size=None`: not), rescaled and normalised (`None`: not), as float32, by size group."""
        grouped_images, grouped_images_index = group_images_by_shape(images, disable_grouping=disable_grouping)
        processed_images_grouped = {}
        for shape, stacked_images in grouped_images.items():
            if size is not None:
                stacked_images = self.resize(stacked_images, size=size, resample=resample)
            processed_images_grouped[shape] = self.rescale_and_normalize(
                stacked_images.to(torch.float32),
                do_rescale=rescale_factor is not None,
                rescale_factor=rescale_factor,
                do_normalize=image_mean is not None,
                image_mean=image_mean,
                image_std=image_std,
            )
        return reorder_images(processed_images_grouped, grouped_images_index)


__all__ = ["MaskDinoImageProcessor"]

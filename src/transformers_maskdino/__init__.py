"""Mask DINO for Hugging Face Transformers.

Importing the package registers its classes with the transformers Auto classes, so that `AutoModel`,
`AutoModelForUniversalSegmentation`, `AutoModelForImageSegmentation` (used by the image-segmentation pipeline),
`AutoModelForObjectDetection` and `AutoImageProcessor` resolve `model_type="maskdino"`.
"""

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageSegmentation,
    AutoModelForObjectDetection,
    AutoModelForUniversalSegmentation,
)

from .configuration_maskdino import MaskDinoConfig
from .image_processing_pil_maskdino import MaskDinoImageProcessorPil
from .modeling_maskdino import (
    MaskDinoForUniversalSegmentation,
    MaskDinoModel,
    MaskDinoPreTrainedModel,
)


def register() -> None:
    """Registers the Mask DINO classes with the transformers Auto classes (idempotent)."""
    AutoConfig.register(MaskDinoConfig.model_type, MaskDinoConfig, exist_ok=True)
    AutoModel.register(MaskDinoConfig, MaskDinoModel, exist_ok=True)
    for auto_class in (AutoModelForUniversalSegmentation, AutoModelForImageSegmentation, AutoModelForObjectDetection):
        auto_class.register(MaskDinoConfig, MaskDinoForUniversalSegmentation, exist_ok=True)
    AutoImageProcessor.register(
        MaskDinoConfig, image_processor_classes={"pil": MaskDinoImageProcessorPil}, exist_ok=True
    )


register()

# Interim, until the torchvision backend lands in `image_processing_maskdino`: the old name is the PIL processor.
MaskDinoImageProcessor = MaskDinoImageProcessorPil

__all__ = [
    "MaskDinoConfig",
    "MaskDinoForUniversalSegmentation",
    "MaskDinoImageProcessor",
    "MaskDinoImageProcessorPil",
    "MaskDinoModel",
    "MaskDinoPreTrainedModel",
    "register",
]

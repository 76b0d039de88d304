"""Mask DINO for Hugging Face Transformers.

Importing the package registers its classes with the transformers Auto classes, so that `AutoModel`,
`AutoModelForUniversalSegmentation`, `AutoModelForImageSegmentation` (used by the image-segmentation pipeline),
`AutoModelForObjectDetection` and `AutoImageProcessor` resolve `model_type="maskdino"`.

The image processor has two backends, as in transformers: `MaskDinoImageProcessor` (torchvision, the default of
`AutoImageProcessor` where torchvision is installed) and `MaskDinoImageProcessorPil` (PIL/NumPy). Where torchvision
is not installed, `MaskDinoImageProcessor` falls back to `MaskDinoImageProcessorPil` with a warning, as
`transformers.Mask2FormerImageProcessor` does.
"""

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageSegmentation,
    AutoModelForObjectDetection,
    AutoModelForUniversalSegmentation,
)
from transformers.models.auto import modeling_auto
from transformers.utils import is_torchvision_available, logging

from .configuration_maskdino import MaskDinoConfig
from .image_processing_pil_maskdino import MaskDinoImageProcessorPil
from .modeling_maskdino import (
    MaskDinoForUniversalSegmentation,
    MaskDinoModel,
    MaskDinoPreTrainedModel,
)

if is_torchvision_available():
    from .image_processing_maskdino import MaskDinoImageProcessor

logger = logging.get_logger(__name__)


def register() -> None:
    """Registers the Mask DINO classes with the transformers Auto classes (idempotent)."""
    AutoConfig.register(MaskDinoConfig.model_type, MaskDinoConfig, exist_ok=True)
    AutoModel.register(MaskDinoConfig, MaskDinoModel, exist_ok=True)
    for auto_class in (AutoModelForUniversalSegmentation, AutoModelForImageSegmentation, AutoModelForObjectDetection):
        auto_class.register(MaskDinoConfig, MaskDinoForUniversalSegmentation, exist_ok=True)
    # The image-segmentation and object-detection pipelines check the model class against these name tables (not the
    # registered classes) and log an error for any other. The Auto mappings are unaffected: they look up registered
    # classes first and list only model types of transformers' own config table, which has no "maskdino".
    for names in (
        modeling_auto.MODEL_FOR_UNIVERSAL_SEGMENTATION_MAPPING_NAMES,
        modeling_auto.MODEL_FOR_OBJECT_DETECTION_MAPPING_NAMES,
    ):
        names.setdefault(MaskDinoConfig.model_type, MaskDinoForUniversalSegmentation.__name__)
    image_processor_classes = {"pil": MaskDinoImageProcessorPil}
    if is_torchvision_available():
        image_processor_classes["torchvision"] = MaskDinoImageProcessor
    AutoImageProcessor.register(MaskDinoConfig, image_processor_classes=image_processor_classes, exist_ok=True)


register()


def __getattr__(name: str):
    # only reached where torchvision is absent (otherwise the name is imported above)
    if name == "MaskDinoImageProcessor":
        logger.warning_once(
            "`MaskDinoImageProcessor` requires torchvision (not installed); falling back to "
            "`MaskDinoImageProcessorPil`. Install torchvision to use the default backend, or import "
            "`MaskDinoImageProcessorPil` (or use `AutoImageProcessor`) to silence this warning."
        )
        globals()[name] = MaskDinoImageProcessorPil
        return MaskDinoImageProcessorPil
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "MaskDinoConfig",
    "MaskDinoForUniversalSegmentation",
    "MaskDinoImageProcessor",
    "MaskDinoImageProcessorPil",
    "MaskDinoModel",
    "MaskDinoPreTrainedModel",
    "register",
]

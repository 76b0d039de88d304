"""Mask DINO for Hugging Face Transformers."""

from .configuration_maskdino import MaskDinoConfig

__all__ = ["MaskDinoConfig"]

"""Converters from official research checkpoints to paperzoo's Hugging Face models."""

from .official_yoco import convert_official_yoco
from .torchscale_retnet import convert_torchscale_retnet

__all__ = ["convert_official_yoco", "convert_torchscale_retnet"]

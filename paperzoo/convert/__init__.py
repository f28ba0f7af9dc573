"""Converters from official research checkpoints to paperzoo's Hugging Face models."""

from .torchscale_retnet import convert_torchscale_retnet

__all__ = ["convert_torchscale_retnet"]

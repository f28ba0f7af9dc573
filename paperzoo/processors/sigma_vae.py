"""The image processor of the σ-VAE (and of LatentLM): pictures ↔ pixel tensors in [-1, 1].

In: PIL images, numpy arrays (H×W, H×W×C or C×H×W) or torch tensors (C×H×W), optionally resized to `size`, rescaled
(`rescale_factor`, 1/255 for 8-bit pictures) and normalised ((x − mean) / std, 0.5 / 0.5 maps [0, 1] to [-1, 1]).
Out (`postprocess`): the inverse, clipped, as PIL images, uint8 numpy arrays or tensors.
"""

from __future__ import annotations

import numpy as np
import torch
from transformers import BatchFeature
from transformers.image_processing_utils import BaseImageProcessor

OUTPUT_TYPES = ("pil", "np", "pt")


class SigmaVAEImageProcessor(BaseImageProcessor):
    model_input_names = ["pixel_values"]

    def __init__(self, size: int | None = None, num_channels: int | None = None, do_rescale: bool = True,
                 rescale_factor: float = 1 / 255, do_normalize: bool = True, image_mean: float = 0.5,
                 image_std: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size <= 0):
            raise ValueError(f"size={size!r} must be a positive integer (the side of the square output) or None")
        if num_channels not in (None, 1, 3, 4):
            raise ValueError(f"num_channels={num_channels!r} must be 1, 3, 4 or None (keep the input's)")
        if not image_std > 0 or not rescale_factor > 0:
            raise ValueError(f"image_std={image_std!r} and rescale_factor={rescale_factor!r} must be > 0")
        self.size, self.num_channels = size, num_channels
        self.do_rescale, self.rescale_factor = do_rescale, rescale_factor
        self.do_normalize, self.image_mean, self.image_std = do_normalize, image_mean, image_std

    def to_array(self, image, index: int) -> np.ndarray:
        """One picture → float32 [C, H, W]."""
        if hasattr(image, "convert") and hasattr(image, "size"):  # PIL, duck-typed
            image = np.asarray(image)
        array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
        if array.ndim == 2:
            array = array[None]
        elif array.ndim == 3 and array.shape[-1] in (1, 3, 4) and array.shape[0] not in (1, 3, 4):
            array = array.transpose(2, 0, 1)  # H×W×C → C×H×W
        if array.ndim != 3 or not np.issubdtype(array.dtype, np.number):
            raise ValueError(f"images[{index}] has shape {array.shape} ({array.dtype}); expected a picture: H×W, "
                             f"H×W×C or C×H×W numbers")
        array = array.astype(np.float32)
        if self.num_channels is not None and array.shape[0] != self.num_channels:
            if array.shape[0] == 1:
                array = np.repeat(array, self.num_channels, 0)
            elif self.num_channels == 1:
                array = array[:3].mean(0, keepdims=True)
            else:
                array = array[: self.num_channels]
        return array

    def preprocess(self, images, return_tensors="pt", **kwargs) -> BatchFeature:
        if kwargs:
            raise TypeError(f"SigmaVAEImageProcessor got unknown argument(s) {sorted(kwargs)}")
        if not isinstance(images, (list, tuple)):
            images = [images]
        if not images:
            raise ValueError("images is empty")
        arrays = [self.to_array(image, i) for i, image in enumerate(images)]
        pixels = [torch.from_numpy(a) for a in arrays]
        if self.size is not None:
            pixels = [torch.nn.functional.interpolate(p[None], size=(self.size, self.size), mode="bilinear",
                                                      antialias=True, align_corners=False)[0]
                      if p.shape[1:] != (self.size, self.size) else p for p in pixels]
        shapes = {tuple(p.shape) for p in pixels}
        if len(shapes) > 1:
            raise ValueError(f"images have different shapes {sorted(shapes)}: set size= to resize them to one")
        x = torch.stack(pixels)
        if self.do_rescale:
            x = x * self.rescale_factor
        if self.do_normalize:
            x = (x - self.image_mean) / self.image_std
        return BatchFeature({"pixel_values": x}, tensor_type=return_tensors)

    def postprocess(self, pixel_values: torch.Tensor, output_type: str = "pil"):
        """Pixel tensors [B, C, H, W] (model space) → pictures: "pil", "np" (uint8 [B, H, W, C]) or "pt" ([0, 1])."""
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type={output_type!r} is not one of {OUTPUT_TYPES}")
        x = pixel_values.detach().float().cpu()
        if self.do_normalize:
            x = x * self.image_std + self.image_mean
        x = x.clamp(0, 1)  # [0, 1] whatever the rescale: a picture's full range
        if output_type == "pt":
            return x
        array = (x.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
        if output_type == "np":
            return array
        from PIL import Image

        return [Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a) for a in array]


__all__ = ["SigmaVAEImageProcessor"]

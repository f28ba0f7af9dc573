"""LatentLM's processor: a tokenizer and the σ-VAE image processor, turning text with images into one sequence.

Each `<image>` marker in a text is replaced by `<boi>` + one latent placeholder per latent + `<eoi>` (the latent
count is (H / patch_size) · (W / patch_size) of the processed image); the images of a batch become `pixel_values`
[I, C, H, W] in the order their markers appear (row by row), which is the order the model fills placeholders in.

With `return_labels=True`: `labels` = the ids, -100 at padding; at a placeholder the placeholder id (the model's
diffusion target) when `image_loss=True`, -100 otherwise (an image to understand, not to generate); and
`latent_loss_mask` [B, T], True at the position BEFORE each latent to model (its condition: `<boi>` and the latents
0..N−2), the explicit shift of the official code.
"""

from __future__ import annotations

import torch
from transformers import BatchFeature, ProcessorMixin

SPAN_TOKENS = ("boi_token", "eoi_token", "latent_token")


class LatentLMProcessor(ProcessorMixin):
    def __init__(self, image_processor=None, tokenizer=None, patch_size: int = 2, image_token: str = "<image>",
                 boi_token: str = "<boi>", eoi_token: str = "<eoi>", latent_token: str = "<latent>",
                 chat_template=None, **kwargs):
        if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size <= 0:
            raise ValueError(f"patch_size={patch_size!r} must be a positive integer (the σ-VAE's)")
        self.patch_size, self.image_token = patch_size, image_token
        self.boi_token, self.eoi_token, self.latent_token = boi_token, eoi_token, latent_token
        missing = [t for t in (boi_token, eoi_token, latent_token) if t not in tokenizer.get_vocab()]
        if missing:  # the span tokens are special tokens of the vocabulary (resize the model's embeddings after)
            tokenizer.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)
        super().__init__(image_processor, tokenizer, chat_template=chat_template, **kwargs)

    def token_id(self, token: str) -> int:
        return self.tokenizer.convert_tokens_to_ids(token)

    @property
    def span_token_ids(self) -> dict[str, int]:
        """{"boi_token_id": .., "eoi_token_id": .., "latent_token_id": ..} for LatentLMConfig."""
        return {f"{name}_id": self.token_id(getattr(self, name)) for name in SPAN_TOKENS}

    def latents_per_image(self, pixel_values: torch.Tensor) -> int:
        sizes = pixel_values.shape[2:]
        if any(s % self.patch_size for s in sizes):
            raise ValueError(f"image size {tuple(sizes)} is not divisible by patch_size={self.patch_size}")
        n = 1
        for s in sizes:
            n *= s // self.patch_size
        return n

    def __call__(self, text=None, images=None, return_labels: bool = False, image_loss: bool = True,
                 padding: bool | str = True, return_tensors: str = "pt", **kwargs) -> BatchFeature:
        if text is None:
            raise ValueError("text is required (use the image_token marker, e.g. '<image>', where images go)")
        texts = [text] if isinstance(text, str) else list(text)
        markers = [t.count(self.image_token) for t in texts]
        pixel_values = None
        if images is not None:
            flat = images if isinstance(images, (list, tuple)) else [images]
            flat = [im for group in flat for im in (group if isinstance(group, (list, tuple)) else [group])]
            if len(flat) != sum(markers):
                raise ValueError(f"{len(flat)} images for {sum(markers)} {self.image_token!r} markers in the text")
            pixel_values = self.image_processor(flat, return_tensors="pt")["pixel_values"]
            span = self.boi_token + self.latent_token * self.latents_per_image(pixel_values) + self.eoi_token
            texts = [t.replace(self.image_token, span) for t in texts]
        elif sum(markers):
            raise ValueError(f"the text has {sum(markers)} {self.image_token!r} markers but no images were given")
        encoded = self.tokenizer(texts, padding=padding, return_tensors=return_tensors, **kwargs)
        data = dict(encoded)
        if pixel_values is not None:
            data["pixel_values"] = pixel_values
        if return_labels:
            ids, mask = encoded["input_ids"], encoded["attention_mask"]
            slot = self.token_id(self.latent_token)
            labels = ids.masked_fill(mask == 0, -100)
            if not image_loss:
                labels = labels.masked_fill(ids == slot, -100)
            data["labels"] = labels
            loss_mask = torch.zeros_like(ids, dtype=torch.bool)
            loss_mask[:, :-1] = labels[:, 1:] == slot  # the position before each latent to model
            data["latent_loss_mask"] = loss_mask
        return BatchFeature(data, tensor_type=return_tensors)

    def batch_decode(self, *args, **kwargs):
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args, **kwargs):
        return self.tokenizer.decode(*args, **kwargs)

    def postprocess_images(self, pixel_values: torch.Tensor, output_type: str = "pil"):
        return self.image_processor.postprocess(pixel_values, output_type)

    @property
    def model_input_names(self):
        return ["input_ids", "attention_mask", "pixel_values"]


__all__ = ["LatentLMProcessor"]

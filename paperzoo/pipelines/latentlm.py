"""`LatentLMPipeline`: a diffusers `DiffusionPipeline` around LatentLM, for prompt or class → image, and image → text.

Generation is the model's own `generate` (KV-cached trunk, one diffusion sampling per latent with a fresh scheduler
state); the pipeline builds the prompt (`prompt` tokens + `<boi>`, or `<boi>` alone with `class_labels`), passes the
pipeline's scheduler, steps, guidance and generator, decodes the latents with the model's σ-VAE and post-processes the
pixels (PIL, numpy or tensors). `describe(images, prompt)` runs the understanding direction: the images as latent
spans (μ of the σ-VAE), then text.
"""

from __future__ import annotations

import torch
from diffusers import DiffusionPipeline
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput

from ..configuration.latentlm import check_guidance_scale
from ..modeling.latentlm_generation import build_noise_scheduler


class LatentLMPipeline(DiffusionPipeline):
    model_cpu_offload_seq = "model"
    # components that may be None (a class-conditional model needs no tokenizer; the scheduler defaults to the
    # model's): listed so that diffusers saves and loads them as components, not as keyword options
    _optional_components = ["processor", "scheduler"]

    def __init__(self, model, processor=None, scheduler=None):
        super().__init__()
        # the sampler is a component (saved, swappable); by default the model's: its class on its training schedule
        scheduler = scheduler if scheduler is not None else build_noise_scheduler(model.config)
        self.register_modules(model=model, processor=processor, scheduler=scheduler)

    def _prompt_ids(self, prompt, class_labels, num_images_per_prompt):
        """(input_ids [B, T] left-padded, attention_mask, class_labels or None), each prompt repeated."""
        c = self.model.config
        if c.boi_token_id is None:
            raise ValueError("the model has no image spans (config.boi_token_id is None)")
        if (prompt is None) == (class_labels is None):
            raise ValueError("pass exactly one of prompt (text → image) and class_labels (class → image)")
        if class_labels is not None:
            if not c.num_classes:
                raise ValueError("class_labels given but the model is not class-conditional (config.num_classes=0)")
            labels = torch.as_tensor([class_labels] if isinstance(class_labels, int) else list(class_labels))
            labels = labels.repeat_interleave(num_images_per_prompt).to(self.model.device)
            ids = torch.full((labels.shape[0], 1), c.boi_token_id, device=self.model.device)
            return ids, torch.ones_like(ids), labels
        if self.processor is None:
            raise ValueError("a text prompt needs the pipeline's processor (its tokenizer)")
        texts = [prompt] if isinstance(prompt, str) else list(prompt)
        tokenizer = self.processor.tokenizer
        rows = [tokenizer(t, add_special_tokens=True)["input_ids"] + [c.boi_token_id] for t in texts
                for _ in range(num_images_per_prompt)]
        T = max(len(r) for r in rows)
        pad = c.pad_token_id if c.pad_token_id is not None else 0
        ids = torch.full((len(rows), T), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, r in enumerate(rows):
            ids[i, T - len(r):], mask[i, T - len(r):] = torch.tensor(r), 1
        return ids.to(self.model.device), mask.to(self.model.device), None

    @torch.no_grad()
    def __call__(self, prompt=None, class_labels=None, num_inference_steps: int | None = None,
                 guidance_scale: float | None = None, generator: torch.Generator | None = None,
                 num_images_per_prompt: int = 1, output_type: str = "pil", return_dict: bool = True):
        """Images for each prompt (or class): `num_inference_steps` solver steps per latent (default: the model's),
        `guidance_scale` w (1: none), `generator` for the latent noise, `output_type` "pil" | "np" | "pt" (pixels in
        [0, 1]) | "latent" (the normalised latent tokens)."""
        c = self.model.config
        if guidance_scale is not None:
            check_guidance_scale(guidance_scale)
        if output_type not in ("pil", "np", "pt", "latent"):
            raise ValueError(f"output_type={output_type!r} is not one of ('pil', 'np', 'pt', 'latent')")
        ids, mask, labels = self._prompt_ids(prompt, class_labels, num_images_per_prompt)
        n = c.vae_config.latents_per_image
        bar = self.progress_bar(total=n)
        out = self.model.generate(
            ids, attention_mask=mask, class_labels=labels, max_new_tokens=n + 1, min_new_tokens=n + 1,
            do_sample=False, num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
            noise_scheduler=self.scheduler, latent_generator=generator, return_dict_in_generate=True,
            pad_token_id=c.pad_token_id if c.pad_token_id is not None else 0,
            latent_callback=lambda rows: bar.update(1))
        bar.close()
        latents = torch.stack([row[-n:] for row in out.latents])  # [B, n, d]: each row's generated span
        if output_type == "latent":
            images = latents
        else:
            pixels = self.model.decode_latents(latents)
            images = self.postprocess(pixels, output_type)
        return ImagePipelineOutput(images=images) if return_dict else (images,)

    def postprocess(self, pixels: torch.Tensor, output_type: str):
        if self.processor is not None:
            return self.processor.postprocess_images(pixels, output_type)
        from ..processors.sigma_vae import SigmaVAEImageProcessor

        return SigmaVAEImageProcessor().postprocess(pixels, output_type)

    @torch.no_grad()
    def describe(self, images, prompt: str = "", max_new_tokens: int = 16) -> list[str]:
        """Image → text: each image as a latent span (followed by `prompt`), then greedy text."""
        if self.processor is None:
            raise ValueError("describe() needs the pipeline's processor (tokenizer and image processor)")
        images = images if isinstance(images, (list, tuple)) else [images]
        texts = [self.processor.image_token + prompt for _ in images]
        batch = self.processor(text=texts, images=list(images), padding_side="left")
        inputs = {k: v.to(self.model.device) for k, v in batch.items()}
        out = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                  pad_token_id=self.model.config.pad_token_id)
        return self.processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


__all__ = ["LatentLMPipeline"]

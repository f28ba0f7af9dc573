"""Training σ-VAE and LatentLM with transformers' `Trainer` (the official release ships no σ-VAE training loop and a
bespoke accelerate loop for the LM).

- `LatentStatisticsCallback`: when the σ-VAE's training ends, measure the mean and standard deviation of σ-sampled
  latents over the training data and store them in its config (`shift_factor`, `scaling_factor`), so they are saved
  with the model (the official script takes them from the LM's first batch and keeps them beside the checkpoint).
- `EMACallback`: an exponential moving average of the trainable weights, copied into the model when training ends
  (official: decay 0.9999 with warm-up inv_gamma 1, power 3/4). The warm-up matters for short runs: without it, after
  1,500 steps at 0.999 the average still holds ~22 % of the initial weights.
- `class_conditional_example`: one training row of the paper's class-conditional setting (`<boi>` + latents + `<eoi>`,
  the class on `<boi>`).
"""

from __future__ import annotations

import torch
from transformers import TrainerCallback


class LatentStatisticsCallback(TrainerCallback):
    """Set the σ-VAE's latent shift/scale from `pixel_values` (a tensor [N, C, H, W], or an iterable of batches)."""

    def __init__(self, pixel_values, batch_size: int = 256, seed: int = 0):
        self.pixel_values, self.batch_size, self.seed = pixel_values, batch_size, seed

    def on_train_end(self, args, state, control, model=None, **kwargs):
        batches = self.pixel_values.split(self.batch_size) if isinstance(self.pixel_values, torch.Tensor) \
            else self.pixel_values
        was_training = model.training
        model.eval()
        generator = torch.Generator(device=model.device).manual_seed(self.seed)
        model.compute_latent_statistics(batches, generator=generator)
        model.train(was_training)


class EMACallback(TrainerCallback):
    """EMA of the trainable parameters (diffusers' EMAModel), swapped into the model at the end of training."""

    def __init__(self, model: torch.nn.Module, decay: float = 0.9999, use_ema_warmup: bool = True,
                 inv_gamma: float = 1.0, power: float = 0.75):
        from diffusers.training_utils import EMAModel

        if not 0 < decay < 1:
            raise ValueError(f"decay={decay!r} must be in (0, 1)")
        self.parameters = [p for p in model.parameters() if p.requires_grad]
        self.ema = EMAModel(self.parameters, decay=decay, use_ema_warmup=use_ema_warmup, inv_gamma=inv_gamma,
                            power=power)

    def on_step_end(self, args, state, control, **kwargs):
        self.ema.step(self.parameters)

    def on_train_end(self, args, state, control, **kwargs):
        self.ema.copy_to(self.parameters)


def class_conditional_example(config, pixel_values: torch.Tensor, label: int) -> dict:
    """{"input_ids", "labels", "pixel_values", "class_labels"} for one image [C, H, W] of class `label`: the sequence
    `<boi>` + one placeholder per latent + `<eoi>`; every latent is a diffusion target and `<eoi>` a text target."""
    vae = config.vae_config
    n = 1
    for size in pixel_values.shape[1:]:
        n *= size // vae.patch_size
    ids = torch.tensor([config.boi_token_id] + [config.latent_token_id] * n + [config.eoi_token_id])
    return {"input_ids": ids, "labels": ids.clone(), "pixel_values": pixel_values,
            "class_labels": torch.tensor(label)}


__all__ = ["EMACallback", "LatentStatisticsCallback", "class_conditional_example"]

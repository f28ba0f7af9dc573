"""σ-VAE configuration (Sun et al., "Multimodal Latent Language Modeling with Next-Token Diffusion", arXiv 2412.08635,
§2.3; official model class: microsoft/unilm `LatentLM/tokenizer_models/modeling_sigma_vae.py`, which has no training
loop): an autoencoder whose encoder gives the mean μ only and whose latent is z = μ + σ·ε with ONE σ ~ N(0, C_σ) per
example, so that the latent space stays spread out and tolerates the errors of an autoregressive model."""

from __future__ import annotations

from transformers import PreTrainedConfig

SPATIAL_DIMS = (1, 2)


def positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name}={value!r} must be a positive integer")
    return value


class SigmaVAEConfig(PreTrainedConfig):
    r"""Configuration of a convolutional σ-VAE over images (`spatial_dims=2`) or 1-D signals (`spatial_dims=1`).

    The encoder patchifies with a stride-`patch_size` convolution, refines with `num_blocks` residual convolution
    blocks of width `hidden_size` and projects to `latent_channels` (d) per patch; the decoder mirrors it. Inputs of any
    size divisible by `patch_size` work; `image_size` is the size generation uses (and the digits default, 8 × 8).

    Args:
        in_channels (`int`): channels of the input (1 for grey images and mono signals, 3 for RGB).
        spatial_dims (`int`): 2 for images [B, C, H, W], 1 for signals [B, C, L].
        image_size (`int`): side of a square image (or length of a signal) that generation produces.
        patch_size (`int`): down-sampling factor; one latent vector per patch (a (H/p)·(W/p) or L/p token sequence).
        latent_channels (`int`): d, the dimension of one latent token (official `latent_size`, 16 for ImageNet).
        hidden_size (`int`), num_blocks (`int`): width and depth of the encoder and of the decoder.
        sigma_std (`float`): the standard deviation of the per-example σ (σ ~ N(0, sigma_std²)). The official code
            draws `randn(B) * std / 0.8` with `std = 0.75`, i.e. sigma_std = 0.9375 (E|σ| ≈ 0.75); VibeVoice uses
            0.625. 0 gives a plain autoencoder (the ablation).
        mu_l2_weight (`float`): β in the loss MSE + β·mean(μ²) (the official "KL" term, `kl_weight=1e-2`).
        scaling_factor (`float`), shift_factor (`float`): the normalisation of latents for a generative model,
            z_norm = (z − shift_factor) · scaling_factor (diffusers' convention). 1 and 0 until
            `SigmaVAEModel.compute_latent_statistics` sets them from data (1/std and mean of σ-sampled latents).
    """

    model_type = "paperzoo_sigma_vae"

    in_channels: int = 1
    spatial_dims: int = 2
    image_size: int = 8
    patch_size: int = 2
    latent_channels: int = 4
    hidden_size: int = 64
    num_blocks: int = 2
    sigma_std: float = 0.9375
    mu_l2_weight: float = 1e-2
    scaling_factor: float = 1.0
    shift_factor: float = 0.0
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self.validate()

    def validate(self):
        """ValueError naming the first field whose value cannot build a model."""
        for name in ("in_channels", "image_size", "patch_size", "latent_channels", "hidden_size", "num_blocks"):
            positive_int(name, getattr(self, name))
        if self.spatial_dims not in SPATIAL_DIMS:
            raise ValueError(f"spatial_dims={self.spatial_dims!r} is not one of {SPATIAL_DIMS} (signals, images)")
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size={self.image_size} is not divisible by patch_size={self.patch_size}")
        for name in ("sigma_std", "mu_l2_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"{name}={value!r} must be a number >= 0")
        if not (isinstance(self.scaling_factor, (int, float)) and self.scaling_factor > 0):
            raise ValueError(f"scaling_factor={self.scaling_factor!r} must be > 0")
        if not isinstance(self.shift_factor, (int, float)) or self.shift_factor != self.shift_factor:
            raise ValueError(f"shift_factor={self.shift_factor!r} must be a finite number")
        super_validate = getattr(super(), "validate", None)
        if super_validate is not None:
            super_validate()

    @property
    def latents_per_image(self) -> int:
        """Latent tokens of one `image_size` input: (image_size / patch_size) ** spatial_dims."""
        return (self.image_size // self.patch_size) ** self.spatial_dims


__all__ = ["SigmaVAEConfig"]

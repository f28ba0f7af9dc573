"""σ-VAE (Sun et al., arXiv 2412.08635 §2.3; official `LatentLM/tokenizer_models/modeling_sigma_vae.py`).

    μ = Enc(x)                               the encoder gives the mean only (no log-variance head)
    σ ~ N(0, sigma_std²), one per example    shared by every latent token and channel of that example
    z = μ + σ·ε,  ε ~ N(0, I)
    x̂ = Dec(z),   loss = MSE(x̂, x) + mu_l2_weight · mean(μ²)     (the official "KL" is just mean(μ²))

The fixed-variance noise keeps the latent space spread out, so the small errors an autoregressive model makes when it
samples latents decode gracefully (the paper's exposure-bias argument); the LM is trained on σ-noised samples.

The encoder/decoder here are convolutional (the official one is a ViT-B/16 pair that needs BEiT-3 and ships no
training loop): patchify by a stride-p convolution, residual conv blocks, 1×1 projection to d channels. Images
[B, C, H, W] (`spatial_dims=2`) or signals [B, C, L] (`spatial_dims=1`) of any size divisible by p.

The model is also a drop-in VAE for diffusers pipelines: `encode(x).latent_dist.sample()`, `decode(z).sample`,
`config.scaling_factor` / `config.shift_factor` and `save_pretrained` / `from_pretrained` (a `PreTrainedModel`,
which `DiffusionPipeline` saves and loads as it does transformers text encoders).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput, can_return_tuple

from ..configuration.sigma_vae import SigmaVAEConfig
from .hub_mixin import PaperzooHubMixin


@dataclass
class SigmaVAEEncoderOutput(ModelOutput):
    """The posterior of a σ-VAE: its mean, and how to draw z = μ + σ·ε (one σ per example).

    `sample(generator)` draws σ ~ N(0, sigma_std²) per example (or takes `sigma`, a float or [B] tensor) and ε;
    `mode()` is μ. `latent_dist` is the object itself, so code written for diffusers' `AutoencoderKL`
    (`vae.encode(x).latent_dist.sample()`) works unchanged.
    """

    latent_mean: torch.FloatTensor | None = None
    sigma_std: float | None = None

    @property
    def latent_dist(self) -> SigmaVAEEncoderOutput:
        return self

    @property
    def mean(self) -> torch.Tensor:
        return self.latent_mean

    def mode(self) -> torch.Tensor:
        return self.latent_mean

    def sample(self, generator: torch.Generator | None = None, sigma: float | torch.Tensor | None = None):
        mu = self.latent_mean
        shape = (mu.shape[0],) + (1,) * (mu.dim() - 1)
        if sigma is None:
            sigma = torch.randn(mu.shape[0], generator=generator, device=mu.device, dtype=mu.dtype) * (self.sigma_std or 0.0)
        sigma = torch.as_tensor(sigma, device=mu.device, dtype=mu.dtype)
        sigma = sigma.reshape(shape) if sigma.dim() else sigma  # [B, 1, 1(, 1)]: one σ per example
        noise = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + sigma * noise


@dataclass
class SigmaVAEDecoderOutput(ModelOutput):
    sample: torch.FloatTensor | None = None  # the reconstruction [B, C, H, W] or [B, C, L] (diffusers' name)


@dataclass
class SigmaVAEOutput(ModelOutput):
    loss: torch.FloatTensor | None = None  # MSE + mu_l2_weight · mean(μ²)
    sample: torch.FloatTensor | None = None  # the reconstruction
    latent_mean: torch.FloatTensor | None = None  # μ [B, d, H/p, W/p]
    latents: torch.FloatTensor | None = None  # the z that was decoded
    reconstruction_loss: torch.FloatTensor | None = None


class SigmaVAEResidualBlock(nn.Module):
    """x + conv(SiLU(GroupNorm(conv(SiLU(GroupNorm(x))))))."""

    def __init__(self, width: int, conv: type[nn.Module]):
        super().__init__()
        groups = next(g for g in (32, 16, 8, 4, 2, 1) if width % g == 0)
        self.norm1 = nn.GroupNorm(groups, width)
        self.conv1 = conv(width, width, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, width)
        self.conv2 = conv(width, width, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        return x + self.conv2(F.silu(self.norm2(h)))


class SigmaVAEEncoder(nn.Module):
    def __init__(self, config: SigmaVAEConfig):
        super().__init__()
        conv = nn.Conv2d if config.spatial_dims == 2 else nn.Conv1d
        p, w = config.patch_size, config.hidden_size
        self.patch_embed = conv(config.in_channels, w, p, stride=p)  # one vector per patch
        self.blocks = nn.ModuleList(SigmaVAEResidualBlock(w, conv) for _ in range(config.num_blocks))
        self.norm = nn.GroupNorm(next(g for g in (32, 16, 8, 4, 2, 1) if w % g == 0), w)
        self.to_mean = conv(w, config.latent_channels, 1)  # μ only: no variance head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.patch_embed(x)
        for block in self.blocks:
            h = block(h)
        return self.to_mean(F.silu(self.norm(h)))


class SigmaVAEDecoder(nn.Module):
    def __init__(self, config: SigmaVAEConfig):
        super().__init__()
        conv = nn.Conv2d if config.spatial_dims == 2 else nn.Conv1d
        unpatch = nn.ConvTranspose2d if config.spatial_dims == 2 else nn.ConvTranspose1d
        p, w = config.patch_size, config.hidden_size
        self.from_latent = conv(config.latent_channels, w, 1)
        self.blocks = nn.ModuleList(SigmaVAEResidualBlock(w, conv) for _ in range(config.num_blocks))
        self.norm = nn.GroupNorm(next(g for g in (32, 16, 8, 4, 2, 1) if w % g == 0), w)
        self.unpatch = unpatch(w, config.in_channels, p, stride=p)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.from_latent(z)
        for block in self.blocks:
            h = block(h)
        return self.unpatch(F.silu(self.norm(h)))


class SigmaVAEPreTrainedModel(PaperzooHubMixin, PreTrainedModel):
    config_class = SigmaVAEConfig
    config: SigmaVAEConfig
    base_model_prefix = "sigma_vae"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = False
    _no_split_modules = ["SigmaVAEEncoder", "SigmaVAEDecoder"]

    def _init_weights(self, module):
        from transformers import initialization as init

        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.ConvTranspose1d, nn.ConvTranspose2d)):
            init.kaiming_uniform_(module.weight, a=5**0.5)  # PyTorch's own conv init
            init.zeros_(module.bias)
        elif isinstance(module, nn.GroupNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)


class SigmaVAEModel(SigmaVAEPreTrainedModel):
    def __init__(self, config: SigmaVAEConfig):
        super().__init__(config)
        self.encoder = SigmaVAEEncoder(config)
        self.decoder = SigmaVAEDecoder(config)
        self.post_init()

    def check_inputs(self, pixel_values: torch.Tensor) -> None:
        """ValueError unless `pixel_values` is [B, in_channels, *sizes] with every size divisible by patch_size."""
        c = self.config
        layout = "[B, C, H, W]" if c.spatial_dims == 2 else "[B, C, L]"
        if pixel_values.dim() != c.spatial_dims + 2 or pixel_values.shape[1] != c.in_channels:
            raise ValueError(f"pixel_values must be {layout} with C=in_channels={c.in_channels}; got shape "
                             f"{tuple(pixel_values.shape)}")
        sizes = pixel_values.shape[2:]
        if any(s % c.patch_size or s == 0 for s in sizes):
            raise ValueError(f"pixel_values size {tuple(sizes)} is not divisible by patch_size={c.patch_size}")

    def encode(self, pixel_values: torch.Tensor, return_dict: bool = True):
        """The posterior: μ [B, d, H/p, W/p] (or [B, d, L/p]) with `.sample(generator)` and `.mode()`."""
        self.check_inputs(pixel_values)
        mean = self.encoder(pixel_values.to(self.encoder.patch_embed.weight.dtype))
        out = SigmaVAEEncoderOutput(latent_mean=mean, sigma_std=self.config.sigma_std)
        return out if return_dict else (out,)

    def decode(self, latents: torch.Tensor, return_dict: bool = True):
        """x̂ = Dec(z), z unnormalised [B, d, H/p, W/p] (or [B, d, L/p])."""
        c = self.config
        if latents.dim() != c.spatial_dims + 2 or latents.shape[1] != c.latent_channels:
            raise ValueError(f"latents must be [B, latent_channels={c.latent_channels}, *sizes] with "
                             f"{c.spatial_dims} sizes; got shape {tuple(latents.shape)}")
        sample = self.decoder(latents.to(self.decoder.from_latent.weight.dtype))
        return SigmaVAEDecoderOutput(sample=sample) if return_dict else (sample,)

    @can_return_tuple
    def forward(self, pixel_values: torch.Tensor, sample_posterior: bool | None = None,
                generator: torch.Generator | None = None, sigma: torch.Tensor | None = None,
                noise: torch.Tensor | None = None, **kwargs) -> SigmaVAEOutput:
        """Encode, draw z (σ-noised while training, μ in eval mode unless `sample_posterior` says otherwise), decode;
        the loss is MSE + mu_l2_weight · mean(μ²). `sigma` [B] and `noise` (μ's shape) fix the draw z = μ + σ·ε."""
        if kwargs:
            raise TypeError(f"SigmaVAEModel.forward() got keyword argument(s) it does not use: {sorted(kwargs)}")
        posterior = self.encode(pixel_values)
        sample_posterior = self.training if sample_posterior is None else sample_posterior
        if not sample_posterior and (sigma is not None or noise is not None):
            raise ValueError("sigma / noise were given but the posterior is not sampled (eval mode uses μ): pass "
                             "sample_posterior=True")
        if noise is not None:
            mu = posterior.latent_mean
            if noise.shape != mu.shape:
                raise ValueError(f"noise must have the latent mean's shape {tuple(mu.shape)}; got {tuple(noise.shape)}")
            if sigma is None or sigma.shape != mu.shape[:1]:
                raise ValueError(f"noise needs sigma of shape [B]={tuple(mu.shape[:1])}")
            z = mu + sigma.to(mu.dtype).reshape(-1, *(1,) * (mu.dim() - 1)) * noise.to(mu.dtype)
        elif sample_posterior:
            z = posterior.sample(generator, sigma=sigma)
        else:
            z = posterior.mode()
        recon = self.decode(z).sample
        reconstruction = F.mse_loss(recon.float(), pixel_values.float())
        loss = reconstruction + self.config.mu_l2_weight * posterior.latent_mean.float().pow(2).mean()
        return SigmaVAEOutput(loss=loss, sample=recon, latent_mean=posterior.latent_mean, latents=z,
                              reconstruction_loss=reconstruction)

    # ------------------------------------------------------------------------------------------------------------------
    # Latent normalisation for a generative model (diffusers' convention)

    def normalize_latents(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.config.shift_factor) * self.config.scaling_factor

    def denormalize_latents(self, z: torch.Tensor) -> torch.Tensor:
        return z / self.config.scaling_factor + self.config.shift_factor

    @torch.no_grad()
    def compute_latent_statistics(self, batches, generator: torch.Generator | None = None) -> tuple[float, float]:
        """Set `config.shift_factor` (mean) and `config.scaling_factor` (1/std) from the σ-sampled latents of every
        batch of pixel values in `batches` (an iterable of tensors or of dicts with "pixel_values"), as the LM is
        trained on them; the official code uses one batch. Saved with the config. Returns (shift, scale)."""
        count, total, total_sq = 0, 0.0, 0.0
        for batch in batches:
            pixels = batch["pixel_values"] if isinstance(batch, dict) else batch
            z = self.encode(pixels.to(self.device, self.dtype)).sample(generator).double()
            count, total, total_sq = count + z.numel(), total + z.sum().item(), total_sq + z.square().sum().item()
        if count == 0:
            raise ValueError("compute_latent_statistics got no batches")
        mean = total / count
        std = max(total_sq / count - mean**2, 0.0) ** 0.5
        if std == 0:
            raise ValueError("the latents have zero variance: cannot normalise them")
        self.config.shift_factor, self.config.scaling_factor = mean, 1.0 / std
        return mean, 1.0 / std

    def patchify(self, z: torch.Tensor) -> torch.Tensor:
        """[B, d, H', W'] (or [B, d, L']) → [B, H'·W', d]: latent tokens in raster order."""
        return z.flatten(2).transpose(1, 2)

    def unpatchify(self, tokens: torch.Tensor, sizes: tuple[int, ...] | None = None) -> torch.Tensor:
        """[B, N, d] → [B, d, *sizes] (default: the square grid of `config.image_size`)."""
        c = self.config
        if sizes is None:
            side = c.image_size // c.patch_size
            sizes = (side,) * c.spatial_dims
        if tokens.shape[1] != int(torch.tensor(sizes).prod()):
            raise ValueError(f"{tokens.shape[1]} latent tokens do not fill a grid of {tuple(sizes)}")
        return tokens.transpose(1, 2).reshape(tokens.shape[0], c.latent_channels, *sizes)


__all__ = ["SigmaVAEModel", "SigmaVAEPreTrainedModel"]

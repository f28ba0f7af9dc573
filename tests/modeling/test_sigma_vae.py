"""σ-VAE: the posterior (one σ per example), the loss, images of any size and 1-D signals, latent statistics saved with
the model, training with Trainer, and use as the VAE of a stock diffusers pipeline (the model contract covers the rest:
tests/contract)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import paperzoo


def tiny_vae(seed=0, **overrides):
    torch.manual_seed(seed)
    kwargs = dict(in_channels=1, image_size=8, patch_size=2, latent_channels=4, hidden_size=16, num_blocks=1)
    kwargs.update(overrides)
    return paperzoo.SigmaVAEModel(paperzoo.SigmaVAEConfig(**kwargs)).eval()


def test_one_sigma_per_example_with_the_configured_spread():
    """z − μ = σ_b ε with ONE σ_b per example: (z − μ)/ε is constant inside an example, and σ ~ N(0, sigma_std²)."""
    vae = tiny_vae(sigma_std=0.75)
    x = torch.rand(2000, 1, 8, 8) * 2 - 1
    with torch.no_grad():
        posterior = vae.encode(x)
    g = torch.Generator().manual_seed(0)
    z = posterior.sample(g)
    g = torch.Generator().manual_seed(0)  # the same draws: σ first, then ε
    sigma = torch.randn(2000, generator=g) * 0.75
    eps = torch.randn(posterior.mode().shape, generator=g)
    torch.testing.assert_close(z, posterior.mode() + sigma[:, None, None, None] * eps)
    assert abs(sigma.std().item() - 0.75) < 0.05
    assert posterior.latent_dist is posterior and torch.equal(posterior.mean, posterior.mode())
    fixed = posterior.sample(sigma=0.0)
    assert torch.equal(fixed, posterior.mode())


def test_loss_is_mse_plus_l2_on_the_mean_and_eval_uses_the_mean():
    vae = tiny_vae(mu_l2_weight=0.3)
    x = torch.rand(3, 1, 8, 12) * 2 - 1  # any size divisible by the patch
    with torch.no_grad():
        out = vae(x)
        mu = vae.encode(x).mode()
        recon = vae.decode(mu).sample
    assert out.latent_mean.shape == (3, 4, 4, 6) and out.sample.shape == x.shape
    want = torch.nn.functional.mse_loss(recon, x) + 0.3 * mu.pow(2).mean()
    torch.testing.assert_close(out.loss, want)
    vae.train()
    g = torch.Generator().manual_seed(1)
    sigma, noise = torch.randn(3, generator=g), torch.randn(mu.shape, generator=g)
    with torch.no_grad():
        sampled = vae(x, sigma=sigma, noise=noise)
    torch.testing.assert_close(sampled.latents, mu + sigma[:, None, None, None] * noise)


def test_signals_in_1d():
    vae = tiny_vae(spatial_dims=1, image_size=64, patch_size=8)
    x = torch.randn(2, 1, 96)
    with torch.no_grad():
        out = vae(x)
    assert out.latent_mean.shape == (2, 4, 12) and out.sample.shape == x.shape
    assert vae.patchify(out.latent_mean).shape == (2, 12, 4)


def test_bad_shapes_are_value_errors():
    vae = tiny_vae()
    with pytest.raises(ValueError, match="not divisible by patch_size=2"):
        vae.encode(torch.randn(1, 1, 8, 7))
    with pytest.raises(ValueError, match="in_channels=1"):
        vae.encode(torch.randn(1, 3, 8, 8))
    with pytest.raises(ValueError, match="latent_channels=4"):
        vae.decode(torch.randn(1, 3, 4, 4))
    with pytest.raises(ValueError, match="sample_posterior"):
        vae(torch.randn(1, 1, 8, 8), sigma=torch.ones(1))
    with pytest.raises(ValueError, match="image_size=9 is not divisible by patch_size=2"):
        paperzoo.SigmaVAEConfig(image_size=9)


def chirps(n: int, length: int = 64, seed: int = 0) -> torch.Tensor:
    """Audio-like signals: sine chirps with random start frequency, sweep and amplitude envelope, [n, 1, length]."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, length)
    f0, sweep, amp = rng.uniform(2, 6, (n, 1)), rng.uniform(0, 6, (n, 1)), rng.uniform(0.3, 1, (n, 1))
    wave = amp * np.sin(2 * math.pi * (f0 * t + 0.5 * sweep * t**2)) * np.exp(-rng.uniform(0, 2, (n, 1)) * t)
    return torch.tensor(wave[:, None], dtype=torch.float32)


@pytest.mark.parametrize("spatial_dims", [1, 2])
def test_trainer_trains_it_and_the_latent_statistics_are_saved(tmp_path, spatial_dims):
    """Trainer lowers the reconstruction error on real data (digits / chirps); LatentStatisticsCallback stores the mean
    and 1/std of σ-sampled latents in the config, and they survive save / from_pretrained."""
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    from paperzoo.data.digits import load_digits_images
    from paperzoo.modeling.latentlm_training import LatentStatisticsCallback

    if spatial_dims == 2:
        train, test = load_digits_images(num_train=512)
        x, x_test = torch.from_numpy(train.images), torch.from_numpy(test.images[:200])
        vae = tiny_vae(hidden_size=32, sigma_std=0.5)
    else:
        x, x_test = chirps(512), chirps(200, seed=1)
        vae = tiny_vae(hidden_size=32, sigma_std=0.5, spatial_dims=1, image_size=64, patch_size=4)
    with torch.no_grad():
        before = torch.nn.functional.mse_loss(vae.decode(vae.encode(x_test).mode()).sample, x_test)
    args = TrainingArguments(output_dir=str(tmp_path / "run"), max_steps=150, per_device_train_batch_size=64,
                             learning_rate=3e-3, report_to=[], save_strategy="no", use_cpu=True, seed=0,
                             disable_tqdm=True)
    Trainer(model=vae, args=args, train_dataset=Dataset.from_dict({"pixel_values": x.numpy()}).with_format("torch"),
            callbacks=[LatentStatisticsCallback(x)]).train()
    vae.eval()
    with torch.no_grad():
        after = torch.nn.functional.mse_loss(vae.decode(vae.encode(x_test).mode()).sample, x_test)
        z = vae.encode(x).sample(torch.Generator().manual_seed(0))
    assert after < 0.5 * before, (before, after)
    assert vae.config.shift_factor == pytest.approx(z.mean().item(), abs=0.05)
    assert vae.config.scaling_factor == pytest.approx(1 / z.std().item(), rel=0.05)
    vae.save_pretrained(tmp_path / "vae")
    loaded = paperzoo.SigmaVAEModel.from_pretrained(tmp_path / "vae")
    assert (loaded.config.shift_factor, loaded.config.scaling_factor) == (vae.config.shift_factor,
                                                                         vae.config.scaling_factor)
    normalised = loaded.normalize_latents(z)
    assert abs(normalised.mean()) < 0.05 and abs(normalised.std() - 1) < 0.05
    torch.testing.assert_close(loaded.denormalize_latents(normalised), z)


def test_it_is_the_vae_of_a_stock_diffusers_pipeline(tmp_path):
    """DiTPipeline (diffusers' own class-conditional pipeline) with the σ-VAE as its `vae`: it samples latents of the
    VAE's shape and decodes them through `vae.decode(z / scaling_factor).sample`; the pipeline saves and loads with
    the σ-VAE as a component."""
    from diffusers import DDIMScheduler, DiTPipeline, DiTTransformer2DModel

    vae = tiny_vae()
    vae.config.scaling_factor = 0.5
    torch.manual_seed(0)
    transformer = DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=4,
                                        num_layers=1, sample_size=4, patch_size=2, norm_num_groups=4,
                                        num_embeds_ada_norm=10).eval()
    pipe = DiTPipeline(transformer=transformer, vae=vae, scheduler=DDIMScheduler())
    decoded = []
    decode = vae.decode
    vae.decode = lambda z, **kw: (decoded.append((z.clone(), decode(z).sample)), decode(z, **kw))[1]
    out = pipe(class_labels=[1, 2], num_inference_steps=2, guidance_scale=1.0,
               generator=torch.Generator().manual_seed(0), output_type="np")
    del vae.decode
    (z, pixels), = decoded
    assert z.shape == (2, 4, 4, 4) and out.images.shape == (2, 8, 8, 1) and np.isfinite(out.images).all()
    want = (pixels / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(out.images, want, atol=1e-6)
    pipe.save_pretrained(tmp_path / "dit")
    loaded = DiTPipeline.from_pretrained(tmp_path / "dit")
    assert type(loaded.vae) is paperzoo.SigmaVAEModel and loaded.vae.config.scaling_factor == 0.5

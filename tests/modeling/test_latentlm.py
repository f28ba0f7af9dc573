"""LatentLM: the diffusion head against a float64 transcription of the official formulas, the explicit condition shift
(no leakage), full-range training timesteps, the joint loss and gradient accumulation, image spans in `generate`
against full forwards, classifier-free guidance, schedulers, bad input, other trunks (the model contract covers the
rest: tests/contract)."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import LlamaConfig

import paperzoo
from paperzoo.modeling.latentlm_generation import build_noise_scheduler, guided_prediction, sample_latents

BOI, EOI, SLOT = 96, 97, 98


def tiny_config(**overrides):
    text = overrides.pop("text_config", None) or LlamaConfig(
        vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=48, max_position_embeddings=64, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    kwargs = dict(text_config=text, vae_config=dict(hidden_size=16, num_blocks=1, image_size=4),
                  head_config=dict(num_hidden_layers=2, kernel_backend="reference"), boi_token_id=BOI,
                  eoi_token_id=EOI, latent_token_id=SLOT, ddpm_batch_mul=2)
    kwargs.update(overrides)
    return paperzoo.LatentLMConfig(**kwargs)


def tiny_model(seed=0, dtype=torch.float64, **overrides):
    torch.manual_seed(seed)
    model = paperzoo.LatentLMForConditionalGeneration(tiny_config(**overrides)).to(dtype).eval()
    with torch.no_grad():  # out of adaLN-Zero: every block and the output matter
        for name, p in model.diffusion_head.named_parameters():
            p.normal_(0, 0.3 if p.dim() > 1 else 0.1)
    return model


def span_ids(rows=2, text=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.cat([torch.randint(3, 96, (rows, text), generator=g),
                      torch.tensor([BOI, SLOT, SLOT, SLOT, SLOT, EOI]).expand(rows, 6)], 1)


# ----------------------------------------------------------------------------------------------------------------------
# The head against the official formulas (microsoft/unilm LatentLM/models/DiT.py, Transformer.py), in float64


def official_head(head, x, t, condition):
    """A transcription of the official forward_diffusion with the head's weights: TimestepEmbedder (cos ‖ sin of
    t · exp(−ln(10000) j / half)), MLPBlock x + gate · SwiGLU(RMSNorm(x)(1 + scale) + shift), FinalLayer."""
    def rms(v):
        return v / torch.sqrt(v.pow(2).mean(-1, keepdim=True) + 1e-6)

    half = 128
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float64) / half)
    args = t.double()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], -1)
    te = head.timestep_embedding
    t_emb = te.linear_2.weight @ torch.nn.functional.silu(te.linear_1.weight @ emb.T)
    c = condition + t_emb.T
    h = x @ head.noisy_latent_proj.weight.T + head.noisy_latent_proj.bias
    for block in head.blocks:
        shift, scale, gate = (torch.nn.functional.silu(c) @ block.modulation.weight.T).chunk(3, -1)
        m = rms(h) * (1 + scale) + shift
        ffn = block.mlp.down_proj.weight @ (torch.nn.functional.silu(block.mlp.gate_proj.weight @ m.T)
                                            * (block.mlp.up_proj.weight @ m.T))
        h = h + gate * ffn.T
    shift, scale = (torch.nn.functional.silu(c) @ head.final_layer.modulation.weight.T).chunk(2, -1)
    return (rms(h) * (1 + scale) + shift) @ head.final_layer.linear.weight.T


def test_the_head_equals_the_official_formulas_in_float64():
    model = tiny_model()
    head = model.diffusion_head
    g = torch.Generator().manual_seed(1)
    x = torch.randn(7, 4, generator=g, dtype=torch.float64)
    t = torch.randint(0, 1000, (7,), generator=g)
    cond = torch.randn(7, 32, generator=g, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(head(x, t, cond), official_head(head, x, t, cond), rtol=0, atol=1e-12)


def test_a_fresh_head_is_adaln_zero():
    """Zero-initialised modulations and output layer (official initialize_weights): a new head predicts 0."""
    torch.manual_seed(0)
    model = paperzoo.LatentLMForConditionalGeneration(tiny_config())
    head = model.diffusion_head
    for block in head.blocks:
        assert not block.modulation.weight.any()
    assert not head.final_layer.modulation.weight.any() and not head.final_layer.linear.weight.any()
    assert head.condition_proj.weight.std() > 0 and head.timestep_embedding.linear_1.weight.std() > 0
    out = head(torch.randn(3, 4), torch.tensor([0, 500, 999]), torch.randn(3, 32))
    assert not out.any()


# ----------------------------------------------------------------------------------------------------------------------
# The condition of latent i is the hidden state before it


def conditions(model, ids, latents):
    """The head's condition for each latent placeholder (from the position before it), [M, W], row-major."""
    hidden = model.model(ids, latents=latents, use_cache=False).last_hidden_state
    before = torch.zeros_like(ids, dtype=torch.bool)
    before[:, :-1] = ids[:, 1:] == SLOT
    return model.diffusion_head.condition(hidden[before])


@pytest.mark.parametrize("k", [0, 2, 3])
def test_perturbing_latent_k_leaves_the_conditions_up_to_k_bit_identical(k):
    model = tiny_model()
    ids = span_ids(rows=1)
    latents = torch.randn(1, 4, 4, dtype=torch.float64)
    moved = latents.clone()
    moved[0, k] += 1.0
    with torch.no_grad():
        before, after = conditions(model, ids, latents), conditions(model, ids, moved)
    assert torch.equal(before[: k + 1], after[: k + 1])  # latent k's own condition included: it never sees itself
    if k < 3:
        assert not torch.allclose(before[k + 1:], after[k + 1:])


def test_the_processor_mask_marks_the_positions_before_the_latents():
    """labels and the processor's shifted latent_loss_mask select the same diffusion targets."""
    model = tiny_model()
    ids = span_ids(rows=2)
    mask = torch.zeros_like(ids, dtype=torch.bool)
    mask[:, :-1] = ids[:, 1:] == SLOT
    assert torch.equal(model.diffusion_items(ids, ids, mask), model.diffusion_items(ids, ids, None))
    assert torch.equal(model.diffusion_items(ids, None, mask), ids == SLOT)
    wrong = mask.roll(1, 1)
    with pytest.raises(ValueError, match="latent_loss_mask"):
        model.diffusion_items(ids, None, wrong)


# ----------------------------------------------------------------------------------------------------------------------
# Training objective


def test_training_timesteps_cover_the_whole_schedule(monkeypatch):
    """t ~ U{0..999} per noise copy (HF VibeVoice's default draws t ∈ {0..9}): every decile is hit about equally."""
    model = tiny_model(dtype=torch.float32)
    seen = []
    head_forward = type(model.diffusion_head).forward
    monkeypatch.setattr(type(model.diffusion_head), "forward",
                        lambda self, x, t, c: (seen.append(t.clone()), head_forward(self, x, t, c))[1])
    torch.manual_seed(0)
    targets, conds = torch.randn(500, 4), torch.randn(500, 32)
    with torch.no_grad():
        for _ in range(4):
            model.diffusion_loss(targets, conds)
    t = torch.cat(seen)
    assert t.numel() == 4 * 500 * 2 and t.min() < 5 and t.max() > 994
    deciles = torch.bincount(t // 100, minlength=10).double()
    assert (deciles / deciles.mean() - 1).abs().max() < 0.15, deciles


def test_the_loss_is_v_prediction_mse_in_fp32_with_fixed_draws():
    """diffusion_loss with given (t, ε) equals MSE(head(√ᾱ z0 + √(1−ᾱ) ε), √ᾱ ε − √(1−ᾱ) z0) written out."""
    model = tiny_model()
    g = torch.Generator().manual_seed(2)
    z0, cond = torch.randn(3, 4, generator=g, dtype=torch.float64), torch.randn(3, 32, generator=g, dtype=torch.float64)
    t = torch.randint(0, 1000, (3, 2), generator=g)
    eps = torch.randn(3, 2, 4, generator=g, dtype=torch.float64)
    abar = model.train_scheduler().alphas_cumprod.double()[t]  # [3, 2]
    zt = abar.sqrt()[..., None] * z0[:, None] + (1 - abar).sqrt()[..., None] * eps
    v = abar.sqrt()[..., None] * eps - (1 - abar).sqrt()[..., None] * z0[:, None]
    with torch.no_grad():
        c = model.diffusion_head.condition(cond).repeat_interleave(2, 0)
        pred = model.diffusion_head(zt.reshape(6, 4), t.reshape(6), c).reshape(3, 2, 4)
        want = (pred.float() - v.float()).pow(2).mean((-1, -2))
        got = model.diffusion_loss(z0, cond, t, eps)
    torch.testing.assert_close(got, want.to(got.dtype), rtol=1e-6, atol=1e-7)


def test_epsilon_prediction_warns(caplog):
    from paperzoo.modeling import latentlm

    latentlm.logger.warning_once.cache_clear()  # once per process: the message may have been logged already
    with caplog.at_level("WARNING", logger=latentlm.logger.name):
        paperzoo.LatentLMForConditionalGeneration(tiny_config(prediction_type="epsilon"))
    assert "ill-posed" in caplog.text and "v_prediction" in caplog.text


def test_joint_loss_is_a_per_item_mean_and_accumulates_exactly(tmp_path):
    """Trainer at batch 2 × 2 accumulation equals batch 4 with latents to model and text of different lengths: the
    loss is (Σ CE + w Σ diffusion) / items with Trainer's num_items_in_batch."""
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments, default_data_collator

    config = tiny_config()
    rows = []
    for i in range(4):
        ids = span_ids(rows=1, seed=i)[0]
        labels = ids.clone()
        labels[: 1 + i] = -100  # text targets differ per row; every latent is a target
        g = torch.Generator().manual_seed(10 + i)
        rows.append({"input_ids": ids.tolist(), "labels": labels.tolist(),
                     "latents": torch.randn(4, 4, generator=g).tolist(),
                     "diffusion_timesteps": torch.randint(0, 1000, (4, 2), generator=g).tolist(),
                     "diffusion_noise": torch.randn(4, 2, 4, generator=g).tolist()})
    updates = []
    for batch, accumulation in ((4, 1), (2, 2)):
        model = tiny_model(dtype=torch.float32).train()
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        args = TrainingArguments(output_dir=str(tmp_path / f"{batch}"), per_device_train_batch_size=batch,
                                 gradient_accumulation_steps=accumulation, max_steps=1, learning_rate=1e-2,
                                 optim="sgd", lr_scheduler_type="constant", report_to=[], save_strategy="no",
                                 use_cpu=True, seed=0, data_seed=0)
        Trainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                data_collator=default_data_collator).train()
        updates.append({n: p.detach() - before[n] for n, p in model.named_parameters()})
    assert updates[0]["diffusion_head.final_layer.linear.weight"].abs().max() > 0
    for name in updates[0]:
        torch.testing.assert_close(updates[1][name], updates[0][name], rtol=1e-4, atol=1e-7, msg=name)


def test_loss_counts_text_and_latents_as_items():
    model = tiny_model()
    ids = span_ids(rows=2)
    latents = torch.randn(2, 4, 4, dtype=torch.float64)
    g = torch.Generator().manual_seed(3)
    draws = dict(diffusion_timesteps=torch.randint(0, 1000, (8, 2), generator=g),
                 diffusion_noise=torch.randn(8, 2, 4, generator=g, dtype=torch.float64))
    with torch.no_grad():
        out = model(ids, latents=latents, labels=ids, **draws)
    n_text = int((ids[:, 1:] != SLOT).sum())  # every next token that is not a latent: 2 × (5 text + <eoi>) - ...
    items = n_text + 8
    want = (out.ce_loss * n_text + model.config.diffusion_loss_weight * out.diffusion_loss * 8) / items
    torch.testing.assert_close(out.loss, want.to(out.loss.dtype), rtol=1e-6, atol=1e-7)


# ----------------------------------------------------------------------------------------------------------------------
# Generation


@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_generated_spans_equal_full_forwards_and_their_latents_are_fed_back(guidance, monkeypatch):
    """Text, then <boi>: 4 placeholders (one sampled latent each), <eoi>, text again. Every step's logits equal a
    full forward over the sequence with the generated latents, and each latent was sampled from the condition the
    full forward gives the position before it."""
    import paperzoo.modeling.latentlm_generation as gen

    model = tiny_model()
    used = []
    real = gen.sample_latents
    monkeypatch.setattr(gen, "sample_latents", lambda head, s, n, c, *a, **k: (used.append(c), real(head, s, n, c,
                                                                                                   *a, **k))[1])
    prompt = torch.cat([span_ids(rows=1)[:, :5], torch.tensor([[BOI]])], 1)
    with torch.no_grad():
        out = model.generate(prompt, max_new_tokens=8, do_sample=False, output_logits=True,
                             return_dict_in_generate=True, guidance_scale=guidance, num_inference_steps=5,
                             latent_generator=torch.Generator().manual_seed(0), pad_token_id=0)
    seq = out.sequences
    assert seq[0, 6:10].tolist() == [SLOT] * 4 and seq[0, 10].item() == EOI
    latents = out.latents[0]
    assert latents.shape == (4, 4)
    with torch.no_grad():
        for i, step in enumerate(out.logits):
            upto = seq[:, : prompt.shape[1] + i]
            n = int((upto == SLOT).sum())
            full = model(upto, latents=latents[:n] if n else None, use_cache=False).logits[:, -1]
            torch.testing.assert_close(step.double(), full, rtol=1e-6, atol=1e-6)
        want = conditions(model, seq[:, :11], latents)
    torch.testing.assert_close(torch.cat(used), want, rtol=1e-9, atol=1e-9)


def test_guidance_one_equals_the_conditional_path_and_both_halves_share_the_noise():
    model = tiny_model()
    head = model.diffusion_head
    g = torch.Generator().manual_seed(4)
    x, cond, uncond = (torch.randn(3, n, generator=g, dtype=torch.float64) for n in (4, 32, 32))
    t = torch.tensor(500)
    with torch.no_grad():
        torch.testing.assert_close(guided_prediction(head, x, t, cond, uncond, 1.0),
                                   guided_prediction(head, x, t, cond), rtol=0, atol=1e-12)
        scheduler = build_noise_scheduler(model.config)
        plain = sample_latents(head, scheduler, 10, cond, generator=torch.Generator().manual_seed(5))
        # uncond == cond: u + w (c − u) = c only if both halves start from the same noise
        doubled = sample_latents(head, scheduler, 10, cond, cond.clone(), 4.0, torch.Generator().manual_seed(5))
    torch.testing.assert_close(doubled, plain, rtol=0, atol=1e-10)


def test_each_latent_starts_from_a_fresh_scheduler_state():
    """Two latents sampled one after the other from one scheduler object equal each sampled alone."""
    model = tiny_model()
    head = model.diffusion_head
    cond = torch.randn(2, 32, dtype=torch.float64)
    scheduler = build_noise_scheduler(model.config)
    with torch.no_grad():
        first = sample_latents(head, scheduler, 8, cond[:1], generator=torch.Generator().manual_seed(1))
        second = sample_latents(head, scheduler, 8, cond[1:], generator=torch.Generator().manual_seed(2))
        alone = sample_latents(head, build_noise_scheduler(model.config), 8, cond[1:],
                               generator=torch.Generator().manual_seed(2))
    assert torch.equal(second, alone) and not torch.equal(first, second)


@pytest.mark.parametrize("name", ["UniPCMultistepScheduler", "DDIMScheduler", "EulerDiscreteScheduler"])
def test_other_diffusers_schedulers_sample(name):
    model = tiny_model()
    prompt = torch.tensor([[5, 6, BOI]])
    with torch.no_grad():
        out = model.generate(prompt, max_new_tokens=5, do_sample=False, noise_scheduler=name, num_inference_steps=4,
                             return_dict_in_generate=True, pad_token_id=0)
    assert out.latents[0].shape == (4, 4) and out.latents[0].isfinite().all()


def test_class_conditional_generation_and_label_dropout():
    model = tiny_model(num_classes=10)
    ids = torch.full((3, 1), BOI)
    with torch.no_grad():
        out = model.generate(ids, class_labels=torch.tensor([1, 2, 3]), max_new_tokens=5, do_sample=False,
                             guidance_scale=2.0, num_inference_steps=4, return_dict_in_generate=True, pad_token_id=0,
                             latent_generator=torch.Generator().manual_seed(0))
    latents = torch.stack(out.latents)
    assert latents.shape == (3, 4, 4) and not torch.allclose(latents[0], latents[1])
    model.train()
    torch.manual_seed(0)
    labels = torch.zeros(4000, dtype=torch.long)
    embeds = model.model.add_class_embedding(torch.zeros(4000, 1, 32, dtype=torch.float64),
                                             torch.full((4000, 1), BOI), labels)
    null = model.model.class_embedding.weight[10]
    dropped = (embeds[:, 0] == null).all(-1).float().mean()
    assert abs(dropped - 0.1) < 0.02


def test_beam_search_refuses_image_spans():
    model = tiny_model()
    with pytest.raises(ValueError, match="num_beams"):
        model.generate(torch.tensor([[5, BOI]]), max_new_tokens=3, num_beams=2, do_sample=False, pad_token_id=0)


@pytest.mark.parametrize("trunk", ["retnet", "yoco"])
def test_paperzoo_trunks_generate_image_spans(trunk):
    if trunk == "retnet":
        text = paperzoo.RetNetConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=48, kernel_backend="reference", pad_token_id=0, bos_token_id=1,
                                     eos_token_id=2)
    else:
        text = paperzoo.YOCOConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, intermediate_size=48,
                                   num_self_heads=2, num_attention_heads=4, num_key_value_heads=2, chunk_size=8,
                                   kernel_backend="reference", pad_token_id=0, bos_token_id=1, eos_token_id=2)
    model = tiny_model(text_config=text)
    prompt = torch.tensor([[5, 6, 7, BOI]])
    with torch.no_grad():
        out = model.generate(prompt, max_new_tokens=7, do_sample=False, output_logits=True,
                             return_dict_in_generate=True, guidance_scale=2.0, num_inference_steps=4, pad_token_id=0)
        seq, latents = out.sequences, out.latents[0]
        n = int((seq[:, :-1] == SLOT).sum())
        full = model(seq[:, :-1], latents=latents[:n], use_cache=False).logits[:, 3:]
    assert seq[0, 4:8].tolist() == [SLOT] * 4 and seq[0, 8].item() == EOI
    torch.testing.assert_close(torch.stack(out.logits, 1).double(), full, rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------------------------------------------------
# Bad input


def test_bad_input_is_a_value_error_naming_the_field():
    model = tiny_model()
    prompt = torch.tensor([[5, BOI]])
    with pytest.raises(ValueError, match="guidance_scale=-1"):
        model.generate(prompt, max_new_tokens=2, guidance_scale=-1.0, pad_token_id=0)
    with pytest.raises(ValueError, match="noise_scheduler_class='NoSuchScheduler'"):
        model.generate(prompt, max_new_tokens=2, noise_scheduler="NoSuchScheduler", pad_token_id=0)
    with pytest.raises(ValueError, match="num_inference_steps=0"):
        model.generate(prompt, max_new_tokens=2, num_inference_steps=0, pad_token_id=0)
    with pytest.raises(ValueError, match="prediction_type"):
        from diffusers import DDIMScheduler

        model.generate(prompt, max_new_tokens=2, noise_scheduler=DDIMScheduler(prediction_type="epsilon"),
                       pad_token_id=0)
    with pytest.raises(ValueError, match="latent_channels=4"):
        tiny_config(head_config=dict(latent_size=8))
    ids = span_ids(rows=1)
    with pytest.raises(ValueError, match="3 latents for 4 latent placeholders"):
        model(ids, latents=torch.randn(1, 3, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="neither pixel_values nor latents"):
        model(ids)
    with pytest.raises(ValueError, match="not divisible by patch_size=2"):
        model(ids, pixel_values=torch.randn(1, 1, 4, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="class_labels"):
        model(ids, latents=torch.randn(1, 4, 4, dtype=torch.float64), class_labels=torch.tensor([1]))


def test_the_generation_config_chooses_scheduler_steps_and_guidance(monkeypatch, tmp_path):
    """`noise_scheduler`, `num_inference_steps` and `guidance_scale` set in the generation config are used; the
    saved defaults are the model config's (`noise_scheduler_class`, `num_inference_steps`, `guidance_scale`)."""
    import paperzoo.modeling.latentlm_generation as gen

    seen = []
    real = gen.sample_latents
    monkeypatch.setattr(gen, "sample_latents", lambda head, s, n, c, u=None, w=1.0, *a, **k: (
        seen.append((type(s).__name__, n, w)), real(head, s, n, c, u, w, *a, **k))[1])
    model = tiny_model()
    model.generation_config.noise_scheduler = "UniPCMultistepScheduler"
    model.generation_config.num_inference_steps = 3
    model.generation_config.guidance_scale = 1.5
    with torch.no_grad():
        model.generate(torch.tensor([[5, BOI]]), max_new_tokens=2, do_sample=False, pad_token_id=0)
    assert seen == [("UniPCMultistepScheduler", 3, 1.5)] * 2
    seen.clear()
    model = tiny_model(noise_scheduler_class="DDIMScheduler", num_inference_steps=4, guidance_scale=2.5)
    model.save_pretrained(tmp_path)
    loaded = paperzoo.LatentLMForConditionalGeneration.from_pretrained(tmp_path, dtype=torch.float64).eval()
    with torch.no_grad():
        loaded.generate(torch.tensor([[5, BOI]]), max_new_tokens=2, do_sample=False, pad_token_id=0)
    assert seen == [("DDIMScheduler", 4, 2.5)] * 2


def test_the_vae_and_its_latent_statistics_save_and_load_with_the_model(tmp_path):
    """Statistics measured on the LatentLM's own σ-VAE are in its config.json, and the loaded model normalises
    pixels into the same latents."""
    model = tiny_model()
    pixels = torch.rand(16, 1, 4, 4, dtype=torch.float64) * 2 - 1
    shift, scale = model.vae.compute_latent_statistics([pixels], generator=torch.Generator().manual_seed(0))
    assert (model.config.vae_config.shift_factor, model.config.vae_config.scaling_factor) == (shift, scale)
    model.save_pretrained(tmp_path)
    loaded = paperzoo.LatentLMForConditionalGeneration.from_pretrained(tmp_path, dtype=torch.float64).eval()
    assert (loaded.vae.config.shift_factor, loaded.vae.config.scaling_factor) == (shift, scale)
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    torch.testing.assert_close(loaded.model.encode_images(pixels, sample=False),
                               (model.vae.patchify(model.vae.encode(pixels).mode()) - shift) * scale)


@pytest.mark.parametrize("lockstep", [True, False])
@pytest.mark.parametrize("trunk", ["llama", "retnet"])
def test_the_unconditional_branch_equals_its_full_forward(trunk, lockstep, monkeypatch):
    """Guidance's unconditional hidden state for latent i is that of `<boi>` (null class) + latents 0..i−1, whether
    it comes from the branch's KV cache (rows in lockstep) or from recomputations (rows out of step)."""
    import paperzoo.modeling.latentlm_generation as gen

    text = None if trunk == "llama" else paperzoo.RetNetConfig(
        vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48,
        kernel_backend="reference", pad_token_id=0, bos_token_id=1, eos_token_id=2)
    model = tiny_model(num_classes=3, **({"text_config": text} if text else {}))
    seen = []
    real = gen.LatentStream.unconditional_hidden
    monkeypatch.setattr(gen.LatentStream, "unconditional_hidden", lambda self, m, rows: (
        seen.append((rows.tolist(), real(self, m, rows))), seen[-1][1])[1])
    if lockstep:
        prompt, latents = torch.tensor([[5, 6, 7, BOI], [8, 9, 10, BOI]]), None
    else:  # row 1 opens its span one token earlier (one latent given in the prompt)
        prompt, latents = torch.tensor([[5, 6, 7, BOI], [5, 6, BOI, SLOT]]), torch.randn(1, 4, dtype=torch.float64)
    with torch.no_grad():
        out = model.generate(prompt, latents=latents, class_labels=torch.tensor([1, 2]), max_new_tokens=5,
                             do_sample=False, guidance_scale=2.0, num_inference_steps=3, return_dict_in_generate=True,
                             pad_token_id=0)
        got = {0: [], 1: []}
        for rows, hidden in seen:
            for r, h in zip(rows, hidden):
                got[r].append(h)
        for r in (0, 1):
            span = out.latents[r][-4:]
            first = 4 - len(got[r])  # row 1 out of step: its first latent came with the prompt
            want = [model.model(torch.tensor([[BOI] + [SLOT] * i]), latents=span[None, :i] if i else None,
                                class_labels=torch.tensor([3]), use_cache=False).last_hidden_state[0, -1]
                    for i in range(first, 4)]
            torch.testing.assert_close(torch.stack(got[r]), torch.stack(want), rtol=1e-9, atol=1e-9)
    assert len(got[0]) == 4 and len(got[1]) == (4 if lockstep else 3)
    assert (model.config.num_classes, all(len(rows) == 2 for rows, _ in seen)) == (3, lockstep)


def test_the_guidance_prefix_starts_the_unconditional_branch(monkeypatch):
    import paperzoo.modeling.latentlm_generation as gen

    model = tiny_model(guidance_prefix_ids=[1])
    seen = []
    real = gen.LatentStream.unconditional_hidden
    monkeypatch.setattr(gen.LatentStream, "unconditional_hidden", lambda self, m, rows: (
        seen.append(real(self, m, rows)), seen[-1])[1])
    with torch.no_grad():
        out = model.generate(torch.tensor([[1, 5, 6, BOI]]), max_new_tokens=3, do_sample=False, guidance_scale=2.0,
                             num_inference_steps=3, return_dict_in_generate=True, pad_token_id=0)
        span = out.latents[0]
        for i, hidden in enumerate(seen):
            want = model.model(torch.tensor([[1, BOI] + [SLOT] * i]), latents=span[None, :i] if i else None,
                               use_cache=False).last_hidden_state[0, -1]
            torch.testing.assert_close(hidden[0], want, rtol=1e-9, atol=1e-9)
    with pytest.raises(ValueError, match="guidance_prefix_ids=\\[120\\]"):
        tiny_config(guidance_prefix_ids=[120])

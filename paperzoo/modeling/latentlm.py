"""LatentLM (Sun et al., "Multimodal Latent Language Modeling with Next-Token Diffusion", arXiv 2412.08635).

Faithful to the official microsoft/unilm `LatentLM/models/Transformer.py` (+ `DiT.py`, `train_hf.py`), generalised from
class-conditional ImageNet to text interleaved with latents in any causal LM:

    inputs   x_i = Embed(token_i)             at a text position
             x_i = W_in · z_i                 at a latent placeholder (z normalised σ-VAE latent; official x_embedder)
    trunk    h = LM(x)                         any decoder-only `AutoModel` (Llama, Qwen2, paperzoo's RetNet / YOCO)
    text     p(token_{i+1} | x_≤i) = softmax(W_out h_i)                                      → cross-entropy
    latent   c_{i+1} = Linear(RMSNorm(h_i))   the hidden state BEFORE latent i+1 (the explicit shift, no leakage)
             head(z_t, t, c) = Final(adaLN-SwiGLU blocks(W_noisy z_t; c + TimestepEmbed(t)))  → DDPM loss on v (or ε)

Training draws `ddpm_batch_mul` (t, ε) pairs per latent, t uniform over all `num_train_timesteps`; the trunk runs once
and only the head sees the copies. The loss is (Σ text CE + w · Σ latent diffusion losses) / (text tokens + latents),
in fp32: a per-item mean, so Trainer's gradient accumulation equals the large batch. Generation lives in
`latentlm_generation.py`: text as usual, and after `<boi>` one diffusion sampling per latent (a fresh diffusers
scheduler state each), fed back as the next input, then `<eoi>`.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, GenerationMixin, PreTrainedModel
from transformers.cache_utils import Cache
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils import ModelOutput, can_return_tuple, logging

from ..configuration.latentlm import LatentLMConfig, LatentLMDiffusionHeadConfig
from ..configuration.retnet import RetNetConfig
from ..configuration.yoco import YOCOConfig
from ..kernels.adaln import adaln_modulate, gated_residual
from .hub_mixin import PaperzooHubMixin
from .inputs import LOSS_KWARGS, cache_forward, check_lm_inputs, reject_unused_kwargs
from .latentlm_generation import LatentLMGenerationMixin
from .layers import GLU, RMSNorm
from .retnet import RetNetModel
from .sigma_vae import SigmaVAEModel
from .yoco import YOCOModel

logger = logging.get_logger(__name__)

# paperzoo's own trunks, built without AutoModel (a remote-code bundle has no registration for them; keyed by model
# type: transformers loads a bundle's config and model files as separate module copies, so classes differ)
OWN_TEXT_MODELS = {RetNetConfig.model_type: RetNetModel, YOCOConfig.model_type: YOCOModel}


# ----------------------------------------------------------------------------------------------------------------------
# The diffusion head (official MLPBlock, FinalLayer, ConditionLayer, TimestepEmbedder)


def zero_init(linear: nn.Linear) -> nn.Linear:
    """Mark a Linear for zero initialisation (adaLN-Zero: every block starts as the identity, the head outputs 0)."""
    linear._zero_init = True
    return linear


class LatentLMTimestepEmbedding(nn.Module):
    """t → [cos(t·f) ‖ sin(t·f)], f_j = max_period^(−j/half) → Linear → SiLU → Linear (no biases)."""

    def __init__(self, width: int, frequency_size: int, max_period: float):
        super().__init__()
        self.frequency_size, self.max_period = frequency_size, max_period
        self.linear_1 = nn.Linear(frequency_size, width, bias=False)
        self.linear_2 = nn.Linear(width, width, bias=False)

    def forward(self, timesteps: torch.Tensor) -> torch.Tensor:  # [N] → [N, W]
        half = self.frequency_size // 2
        acc = torch.promote_types(self.linear_1.weight.dtype, torch.float32)  # the angles reach 1000 rad: ≥ fp32
        j = torch.arange(half, device=timesteps.device, dtype=acc)
        freqs = torch.exp(-math.log(self.max_period) * j / half)
        args = timesteps.to(acc)[:, None] * freqs[None]  # [N, half]
        emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1).to(self.linear_1.weight.dtype)
        return self.linear_2(F.silu(self.linear_1(emb)))


class LatentLMAdaLNBlock(GradientCheckpointingLayer):
    """x + gate · SwiGLU(RMSNorm(x)·(1 + scale) + shift), with (shift, scale, gate) = Linear(SiLU(c))."""

    def __init__(self, width: int, ffn_width: int, eps: float, backend: str):
        super().__init__()
        self.eps, self.backend = eps, backend
        self.modulation = zero_init(nn.Linear(width, 3 * width, bias=False))
        self.mlp = GLU(width, ffn_width)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:  # x, c [N, W]
        shift, scale, gate = self.modulation(F.silu(c)).chunk(3, dim=-1)
        h = adaln_modulate(x, shift, scale, self.eps, backend=self.backend)
        return gated_residual(x, gate, self.mlp(h), backend=self.backend)


class LatentLMFinalLayer(nn.Module):
    """Linear(RMSNorm(x)·(1 + scale) + shift) → d, with (shift, scale) = Linear(SiLU(c)); both zero-initialised."""

    def __init__(self, width: int, latent_size: int, eps: float, backend: str):
        super().__init__()
        self.eps, self.backend = eps, backend
        self.modulation = zero_init(nn.Linear(width, 2 * width, bias=False))
        self.linear = zero_init(nn.Linear(width, latent_size, bias=False))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.modulation(F.silu(c)).chunk(2, dim=-1)
        return self.linear(adaln_modulate(x, shift, scale, self.eps, backend=self.backend))


class LatentLMDiffusionHead(nn.Module):
    """ε_θ / v_θ(z_t, t, c): the small network run for every solver step of every latent."""

    def __init__(self, config: LatentLMDiffusionHeadConfig, lm_hidden_size: int):
        super().__init__()
        width, eps, backend = config.width(lm_hidden_size), config.rms_norm_eps, config.kernel_backend
        self.latent_size = config.latent_size
        # official ConditionLayer: RMSNorm without weight, then Linear (the trunk's blocks have no final norm there)
        self.condition_norm = RMSNorm(lm_hidden_size, eps, elementwise_affine=False)
        self.condition_proj = nn.Linear(lm_hidden_size, width, bias=False)
        self.noisy_latent_proj = nn.Linear(config.latent_size, width)  # official noisy_x_embedder (patch size 1)
        self.timestep_embedding = LatentLMTimestepEmbedding(width, config.frequency_embedding_size, config.max_period)
        self.blocks = nn.ModuleList(LatentLMAdaLNBlock(width, config.ffn_width(lm_hidden_size), eps, backend)
                                    for _ in range(config.num_hidden_layers))
        self.final_layer = LatentLMFinalLayer(width, config.latent_size, eps, backend)

    def condition(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """c = Linear(RMSNorm(h)) [..., W] from the trunk's hidden states [..., H]."""
        return self.condition_proj(self.condition_norm(hidden_states))

    def forward(self, noisy_latents: torch.Tensor, timesteps: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """noisy_latents [N, d], timesteps [N] (int or float), condition [N, W] → prediction [N, d]."""
        c = condition + self.timestep_embedding(timesteps).to(condition.dtype)
        x = self.noisy_latent_proj(noisy_latents.to(condition.dtype))
        for block in self.blocks:
            x = block(x, c)
        return self.final_layer(x, c)


# ----------------------------------------------------------------------------------------------------------------------
# Outputs


@dataclass
class LatentLMModelOutput(ModelOutput):
    last_hidden_state: torch.FloatTensor | None = None  # [B, T, H]
    cache: Cache | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    latents: torch.FloatTensor | None = None  # [M, d] the normalised latents placed at the M placeholders


@dataclass
class LatentLMCausalLMOutput(ModelOutput):
    loss: torch.FloatTensor | None = None  # (Σ CE + w Σ diffusion) / items
    logits: torch.FloatTensor | None = None  # [B, T, V]
    cache: Cache | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    last_hidden_state: torch.FloatTensor | None = None  # [B, T, H]: what conditions the next latent when generating
    ce_loss: torch.FloatTensor | None = None  # mean text cross-entropy of this batch
    diffusion_loss: torch.FloatTensor | None = None  # mean diffusion loss per latent of this batch


# ----------------------------------------------------------------------------------------------------------------------
# Models


class LatentLMPreTrainedModel(PaperzooHubMixin, PreTrainedModel):
    config_class = LatentLMConfig
    config: LatentLMConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _no_split_modules = ["LatentLMAdaLNBlock"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _can_compile_fullgraph = True

    def _init_weights(self, module):
        from transformers import initialization as init

        std = self.config.head_config.initializer_range
        if isinstance(module, nn.Linear):
            if getattr(module, "_zero_init", False):
                init.zeros_(module.weight)
            else:
                init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=std)


class LatentLMModel(LatentLMPreTrainedModel):
    """The trunk over text and latents, the σ-VAE that makes latents from pixels (frozen: trained on its own first),
    the latent input projection and the class embedding (class-conditional mode). The heads that predict (the text
    head and the diffusion head) are LatentLMForConditionalGeneration's."""

    def __init__(self, config: LatentLMConfig):
        super().__init__(config)
        if config.prediction_type == "epsilon":
            logger.warning_once(
                "LatentLM with prediction_type='epsilon': with the cosine schedule (ᾱ_999 ≈ 2.4e-9, near-zero terminal "
                "SNR) ε-prediction is ill-posed at high noise; DPM-Solver++ then amplifies small errors ~10³× and "
                "samples saturate (measured on digits: chance-level accuracy at 20 and 250 steps). Use 'v_prediction'.")
        H = config.text_config.hidden_size
        own = OWN_TEXT_MODELS.get(config.text_config.model_type)
        self.language_model = own(config.text_config) if own else AutoModel.from_config(config.text_config)
        self.vae = SigmaVAEModel(config.vae_config)
        self.vae.requires_grad_(False)
        self.latent_proj = nn.Linear(config.vae_config.latent_channels, H)  # official x_embedder
        self.class_embedding = nn.Embedding(config.num_classes + 1, H) if config.num_classes else None
        self._cache_keyword = "cache" if "cache" in inspect.signature(self.language_model.forward).parameters \
            else "past_key_values"
        self.post_init()

    def get_input_embeddings(self):
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.language_model.set_input_embeddings(value)

    # ------------------------------------------------------------------------------------------------------------------
    # Latents

    def encode_images(self, pixel_values: torch.Tensor, sample: bool, generator=None) -> torch.Tensor:
        """Pixels [I, C, H, W] (or [I, C, L]) → normalised latent tokens [I, N, d] in raster order: σ-noised samples
        (the official training input: the LM learns on noisy latents), or μ when `sample` is False."""
        with torch.no_grad():
            posterior = self.vae.encode(pixel_values.to(self.vae.dtype))
            z = posterior.sample(generator) if sample else posterior.mode()
            return self.vae.normalize_latents(self.vae.patchify(z))

    def decode_latents(self, latents: torch.Tensor, sizes: tuple[int, ...] | None = None) -> torch.Tensor:
        """Normalised latent tokens [I, N, d] → pixels [I, C, H, W] (default grid: the VAE's `image_size`)."""
        z = self.vae.unpatchify(self.vae.denormalize_latents(latents.to(self.vae.dtype)), sizes)
        return self.vae.decode(z).sample

    def gather_latents(self, input_ids, pixel_values, latents) -> torch.Tensor | None:
        """The latents for the placeholders of `input_ids`, [M, d] in row-major placeholder order; ValueError unless
        their number equals the number of placeholders."""
        c = self.config
        if pixel_values is not None and latents is not None:
            raise ValueError("pass pixel_values or latents, not both")
        if pixel_values is not None:
            latents = self.encode_images(pixel_values, sample=self.training)
        placeholders = 0
        if input_ids is not None and c.latent_token_id is not None and not torch.compiler.is_compiling():
            placeholders = int((input_ids == c.latent_token_id).sum())
        if latents is None:
            if placeholders:
                raise ValueError(f"input_ids holds {placeholders} latent placeholders (latent_token_id="
                                 f"{c.latent_token_id}) but neither pixel_values nor latents were given")
            return None
        if c.latent_token_id is None:
            raise ValueError("latents were given but config.latent_token_id is None: the model has no image spans")
        if input_ids is None:
            raise ValueError("latents need input_ids: they fill the latent placeholders of input_ids")
        d = c.vae_config.latent_channels
        if latents.shape[-1] != d:
            raise ValueError(f"latents have {latents.shape[-1]} channels in their last dimension; the VAE's "
                             f"latent_channels={d}")
        latents = latents.reshape(-1, d)
        if not torch.compiler.is_compiling() and latents.shape[0] != placeholders:
            raise ValueError(f"{latents.shape[0]} latents for {placeholders} latent placeholders in input_ids")
        return latents

    # ------------------------------------------------------------------------------------------------------------------

    @cache_forward
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        latents: torch.FloatTensor | None = None,
        class_labels: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        **kwargs,
    ) -> LatentLMModelOutput:
        """`latents`: normalised latent tokens for the placeholders, [M, d] or [I, N, d] (row-major order), or
        `pixel_values` [I, C, H, W] to encode; `class_labels` [B] (class-conditional mode) are added at `<boi>`."""
        c = self.config
        reject_unused_kwargs(self, kwargs)
        # a 4-D mask is what generate builds for a static cache: the backbone takes it as it is
        check_lm_inputs(c, input_ids, inputs_embeds, attention_mask if attention_mask is None
                        or attention_mask.dim() == 2 else None)
        latents = self.gather_latents(input_ids, pixel_values, latents)
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)  # [B, T, H]
        if latents is not None:
            slots = (input_ids == c.latent_token_id)[..., None]
            inputs_embeds = inputs_embeds.masked_scatter(slots, self.latent_proj(latents.to(inputs_embeds.dtype)))
        if class_labels is not None:
            inputs_embeds = self.add_class_embedding(inputs_embeds, input_ids, class_labels)
        if output_hidden_states is None:
            output_hidden_states = c.output_hidden_states
        extra = {"output_hidden_states": True} if output_hidden_states else {}
        use_cache = use_cache if use_cache is not None else (c.use_cache and not self.training)
        out = self.language_model(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                                  position_ids=position_ids, use_cache=use_cache,
                                  **{self._cache_keyword: cache}, return_dict=True, **extra)
        return LatentLMModelOutput(last_hidden_state=out.last_hidden_state,
                                   cache=out.cache,
                                   hidden_states=out.hidden_states, latents=latents)

    def add_class_embedding(self, inputs_embeds, input_ids, class_labels):
        """Class-conditional mode: the class (null class `num_classes` for guidance; training labels dropped to it
        with probability `label_dropout`, official LabelEmbedder) is added to the `<boi>` input of its row."""
        c = self.config
        if self.class_embedding is None:
            raise ValueError("class_labels were given but config.num_classes is 0 (no class-conditional mode)")
        if input_ids is None or c.boi_token_id is None:
            raise ValueError("class_labels need input_ids with a <boi> token (config.boi_token_id) to condition")
        if class_labels.shape != (inputs_embeds.shape[0],):
            raise ValueError(f"class_labels must be [B]={inputs_embeds.shape[0]}; got {tuple(class_labels.shape)}")
        if not torch.compiler.is_compiling() and ((class_labels < 0) | (class_labels > c.num_classes)).any():
            raise ValueError(f"class_labels {class_labels.tolist()} outside [0, {c.num_classes}] (num_classes is the "
                             f"null class)")
        if self.training and c.label_dropout > 0:
            drop = torch.rand(class_labels.shape, device=class_labels.device) < c.label_dropout
            class_labels = torch.where(drop, c.num_classes, class_labels)
        at_boi = (input_ids == c.boi_token_id)[..., None].to(inputs_embeds.dtype)  # [B, T, 1]
        return inputs_embeds + at_boi * self.class_embedding(class_labels)[:, None]


class LatentLMForConditionalGeneration(LatentLMGenerationMixin, LatentLMPreTrainedModel, GenerationMixin):
    def __init__(self, config: LatentLMConfig):
        super().__init__(config)
        self.model = LatentLMModel(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.vocab_size, bias=False)
        self.diffusion_head = LatentLMDiffusionHead(config.head_config, config.text_config.hidden_size)
        embeddings = self.model.get_input_embeddings()
        name = next(n for n, m in self.model.language_model.named_modules() if m is embeddings)
        self._tied_weights_keys = {"lm_head.weight": f"model.language_model.{name}.weight"}
        self.post_init()

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, value):
        self.lm_head = value

    @property
    def vae(self) -> SigmaVAEModel:
        return self.model.vae

    def decode_latents(self, latents, sizes=None):
        return self.model.decode_latents(latents, sizes)

    @cache_forward
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        latents: torch.FloatTensor | None = None,
        class_labels: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        latent_loss_mask: torch.BoolTensor | None = None,
        diffusion_timesteps: torch.LongTensor | None = None,
        diffusion_noise: torch.FloatTensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs,
    ) -> LatentLMCausalLMOutput:
        """`labels` [B, T]: text ids to predict, -100 to skip, and `latent_token_id` at the latents to model by
        diffusion (what `LatentLMProcessor` returns). `latent_loss_mask` [B, T] (the processor's shifted mask: True at
        the position whose hidden state conditions the next latent) selects them instead when given.
        `diffusion_timesteps` [L, k] and `diffusion_noise` [L, k, d] fix the (t, ε) draws (else random)."""
        loss_kwargs = {name: kwargs.pop(name) for name in LOSS_KWARGS if name in kwargs}
        reject_unused_kwargs(self, kwargs)
        out = self.model(input_ids, pixel_values, latents, class_labels, attention_mask, position_ids, cache,
                         inputs_embeds, use_cache, output_hidden_states, return_dict=True)
        hidden = out.last_hidden_state
        keep = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
        logits = self.lm_head(hidden[:, keep])
        loss = ce_loss = diffusion_loss = None
        if labels is not None or latent_loss_mask is not None:
            loss, ce_loss, diffusion_loss = self.joint_loss(
                input_ids, logits, hidden, out.latents, labels, latent_loss_mask, diffusion_timesteps,
                diffusion_noise, **loss_kwargs)
        return LatentLMCausalLMOutput(loss=loss, logits=logits, cache=out.cache, hidden_states=out.hidden_states,
                                      last_hidden_state=hidden, ce_loss=ce_loss, diffusion_loss=diffusion_loss)

    # ------------------------------------------------------------------------------------------------------------------
    # Training objective

    def diffusion_items(self, input_ids, labels, latent_loss_mask) -> torch.Tensor:
        """[B, T] bool: the latent placeholders whose latent is a diffusion target (labels == latent_token_id, or the
        shifted `latent_loss_mask` moved onto the latent it conditions)."""
        c = self.config
        if c.latent_token_id is None or input_ids is None:
            return torch.zeros_like(labels if labels is not None else latent_loss_mask, dtype=torch.bool)
        slots = input_ids == c.latent_token_id
        from_labels = slots & (labels == c.latent_token_id) if labels is not None else None
        if latent_loss_mask is None:
            items = from_labels
        else:
            if latent_loss_mask.shape != input_ids.shape:
                raise ValueError(f"latent_loss_mask must be [B, T]={tuple(input_ids.shape)}; got "
                                 f"{tuple(latent_loss_mask.shape)}")
            items = torch.zeros_like(slots)
            items[:, 1:] = latent_loss_mask[:, :-1].bool()
            if latent_loss_mask[:, -1].any() or (items & ~slots).any():
                raise ValueError("latent_loss_mask is True at a position not followed by a latent placeholder "
                                 "(it marks the position before each latent to model)")
            if from_labels is not None and not torch.equal(items, from_labels):
                raise ValueError("latent_loss_mask and labels disagree on which latents to model (labels hold "
                                 "latent_token_id exactly where the shifted mask is True)")
        if items[:, 0].any():
            raise ValueError("a latent to model is the first token of its row: no position before it conditions it")
        return items

    def joint_loss(self, input_ids, logits, hidden, latents, labels, latent_loss_mask, timesteps, noise,
                   num_items_in_batch=None, **loss_kwargs):
        """(Σ text CE + w · Σ per-latent diffusion loss) / items, items = Trainer's `num_items_in_batch` (which counts
        every label that is not -100: text tokens and latents) or this batch's count. Returns (loss, mean CE, mean
        diffusion loss)."""
        c = self.config
        items_mask = self.diffusion_items(input_ids, labels, latent_loss_mask)  # [B, T]
        text_labels = None
        if labels is not None:
            text_labels = labels.masked_fill(labels == c.latent_token_id, -100) \
                if c.latent_token_id is not None else labels
        n_text = int((text_labels[:, 1:] != -100).sum()) if text_labels is not None else 0
        n_latents = int(items_mask.sum())
        items = num_items_in_batch if num_items_in_batch is not None else max(n_text + n_latents, 1)
        total = hidden.new_zeros((), dtype=torch.float32)
        ce = diffusion = None
        if text_labels is not None:
            if logits.shape[1] != labels.shape[1]:
                raise ValueError(f"labels cover {labels.shape[1]} positions but logits only {logits.shape[1]} "
                                 f"(logits_to_keep): keep every position to compute the loss")
            ce_term = self.loss_function(logits=logits, labels=text_labels, vocab_size=c.vocab_size,
                                         num_items_in_batch=items, **loss_kwargs)
            total = total + ce_term
            ce = (ce_term.detach() * items / max(n_text, 1)) if n_text else ce_term.detach() * 0
        if n_latents:
            order = torch.cumsum((input_ids == c.latent_token_id).flatten(), 0) - 1  # placeholder → latents row
            targets = latents[order[items_mask.flatten()]]  # [L, d]
            conditions = hidden[:, :-1][items_mask[:, 1:]]  # [L, H]: the position before each latent
            per_latent = self.diffusion_loss(targets, conditions, timesteps, noise)  # [L]
            total = total + c.diffusion_loss_weight * per_latent.sum() / items
            diffusion = per_latent.detach().mean()
        elif latents is not None:  # keep every head parameter in the graph (DDP / zero gradients, not None)
            total = total + 0.0 * sum(p.sum() for p in self.diffusion_head.parameters())
        return total, ce, diffusion

    def train_scheduler(self):
        """diffusers' DDPMScheduler with the training schedule (only add_noise / get_velocity are used)."""
        from diffusers import DDPMScheduler

        c = self.config
        key = (c.num_train_timesteps, c.beta_schedule, c.prediction_type)
        if getattr(self, "_train_scheduler_key", None) != key:
            self._train_scheduler = DDPMScheduler(num_train_timesteps=c.num_train_timesteps,
                                                  beta_schedule=c.beta_schedule, prediction_type=c.prediction_type)
            self._train_scheduler_key = key
        return self._train_scheduler

    def diffusion_loss(self, targets, conditions, timesteps=None, noise=None) -> torch.Tensor:
        """Per-latent DDPM loss [L]: k = ddpm_batch_mul draws of t ~ U{0..T−1} and ε per latent, z_t = √ᾱ z_0 + √(1−ᾱ) ε,
        MSE (fp32) of the head's prediction against v = √ᾱ ε − √(1−ᾱ) z_0 (or ε), averaged over copies and channels."""
        c = self.config
        L, d, k = targets.shape[0], targets.shape[1], c.ddpm_batch_mul
        sched = self.train_scheduler()
        z0 = targets.float().repeat_interleave(k, 0)  # [L·k, d]
        if timesteps is None:
            timesteps = torch.randint(0, c.num_train_timesteps, (L * k,), device=z0.device)
        elif timesteps.numel() != L * k:
            raise ValueError(f"diffusion_timesteps has {timesteps.numel()} values; {L} latents × ddpm_batch_mul={k} "
                             f"= {L * k} needed")
        if noise is None:
            noise = torch.randn_like(z0)
        elif noise.numel() != L * k * d:
            raise ValueError(f"diffusion_noise has shape {tuple(noise.shape)}; [{L}, {k}, {d}] needed")
        t = timesteps.reshape(-1).to(z0.device).long()
        noise = noise.reshape(L * k, d).float().to(z0.device)
        zt = sched.add_noise(z0, noise, t)
        target = sched.get_velocity(z0, noise, t) if c.prediction_type == "v_prediction" else noise
        cond = self.diffusion_head.condition(conditions).repeat_interleave(k, 0)  # [L·k, W]
        pred = self.diffusion_head(zt, t, cond)
        return (pred.float() - target).pow(2).mean(-1).view(L, k).mean(1)


__all__ = ["LatentLMForConditionalGeneration", "LatentLMModel", "LatentLMPreTrainedModel"]

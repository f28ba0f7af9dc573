"""RetNet (Sun et al., "Retentive Network: A Successor to Transformer for Large Language Models", arXiv 2307.08621).

Faithful to the official torchscale 0.3.0 (`architecture/retnet.py`, `component/multiscale_retention.py`):
    X' = X + MSR(RMSNorm(X)),  Y = X' + GLU(RMSNorm(X'))
    MSR(X) = W_O( swish(X W_G) ⊙ GroupNorm_h( Retention_h(X) ) ),  γ_h = 1 − 2^(−5−h)
with torchscale's interleaved (GPT-J style) rotation of q and k, k scaled by d_k^-½, the decay normalisation
D̃_nm = γ^(n−m) / sqrt(Σ_{i≤n} γ^(n−i)) and the (detached) row normalisation R̃ = R / max(|Σ_m R_nm|, 1).

torchscale applies the row normalisation in its parallel form only; here it is carried in every form, through a
column of ones appended to v (its output is Σ_m R_nm), so the parallel, chunkwise and recurrent forms all compute
torchscale's parallel function exactly, and decoding matches a full forward pass.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.cache_utils import Cache
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BaseModelOutputWithPast,
    CausalLMOutputWithPast,
    SequenceClassifierOutputWithPast,
)
from transformers.utils import can_return_tuple

from ..configuration.retnet import RetNetConfig
from ..kernels.linear_cross_entropy import linear_cross_entropy
from ..kernels.retention import retention
from .cache import check_recurrent_cache, count_tokens, resolve_cache, write_state
from .hub_mixin import PaperzooHubMixin
from .inputs import LOSS_KWARGS, cache_forward, check_lm_inputs, reject_unused_kwargs
from .layers import GLU, InterleavedRotary, RMSNorm, apply_rotary

_STATE, _POSITION = 0, 1  # cache slots per layer: retention state [B, H, K, V+16-V%16]; next position per row [B]


def retnet_log_decay(num_heads: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """log γ_h for γ_h = 1 − 2^(−5−h). Built in fp32 (or float64) at every call: a buffer would be cast by .half()."""
    h = torch.arange(num_heads, device=device, dtype=dtype)
    return torch.log1p(-torch.exp2(-5.0 - h))  # [H]


class RetNetMultiScaleRetention(nn.Module):
    """Gated multi-scale retention (paper Eq. 8) with torchscale's normalisations."""

    def __init__(self, config: RetNetConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.num_heads = config.num_attention_heads
        self.key_dim = config.hidden_size // self.num_heads
        self.head_dim = config.value_dim // self.num_heads
        self.chunk_size = config.chunk_size
        self.kernel_backend = config.kernel_backend
        self.q_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=False)
        self.k_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=False)
        self.v_proj = nn.Linear(config.hidden_size, config.value_dim, bias=False)
        self.g_proj = nn.Linear(config.hidden_size, config.value_dim, bias=False)
        self.o_proj = nn.Linear(config.value_dim, config.hidden_size, bias=False)
        self.group_norm = RMSNorm(self.head_dim, eps=config.rms_norm_eps, elementwise_affine=False)

    def forward(
        self,
        hidden_states: torch.Tensor,  # [B, T, d]
        rotary: tuple[torch.Tensor, torch.Tensor],  # sin, cos [B, T, 1, K]
        decay_norm: torch.Tensor,  # 1 / sqrt(Σ_{i≤n} γ^i) [B, T, H]
        token_mask: torch.Tensor | None,  # [B, T], 0 = padding
        cache: Cache | None,
    ) -> torch.Tensor:
        B, T, _ = hidden_states.shape
        H, K, V = self.num_heads, self.key_dim, self.head_dim
        q = self.q_proj(hidden_states).view(B, T, H, K)
        k = self.k_proj(hidden_states).view(B, T, H, K) * K**-0.5
        v = self.v_proj(hidden_states).view(B, T, H, V)
        sin, cos = rotary
        q, k = apply_rotary(q, sin, cos), apply_rotary(k, sin, cos)
        q = (q * decay_norm[..., None]).to(v.dtype)  # D̃'s row factor, folded into q
        # A ones column makes the op also return Σ_m R̃_nm, torchscale's row normaliser; zero columns after it keep
        # the width a multiple of 16, which the Triton kernels load and multiply without masking waste.
        extra = 16 - V % 16
        ones = torch.zeros(B, T, H, extra, dtype=v.dtype, device=v.device)
        ones[..., 0] = 1
        v = torch.cat([v, ones], dim=-1)  # [B, T, H, V + extra]
        if token_mask is not None:  # padded tokens never enter the state
            k = k * token_mask[:, :, None, None]
            v = v * token_mask[:, :, None, None]

        state = cache.get_recurrent_state(self.layer_idx, _STATE) if cache is not None else None
        if state is not None and state.shape != (B, H, K, V + extra):
            raise ValueError(
                f"cache layer {self.layer_idx} holds a state of shape {tuple(state.shape)}, but this model needs "
                f"{(B, H, K, V + extra)}: the cache comes from another model or batch"
            )
        log_decay = retnet_log_decay(H, q.device, torch.float64 if q.dtype == torch.float64 else torch.float32)
        o, state = retention(q, k, v, log_decay, state, output_final_state=cache is not None,
                             chunk_size=self.chunk_size, backend=self.kernel_backend)
        if cache is not None:
            write_state(cache, self.layer_idx, _STATE, state)

        o, row_sum = o[..., :V], o[..., V : V + 1]
        o = o / row_sum.detach().abs().clamp(min=1)  # [B, T, H, V]
        o = self.group_norm(o).reshape(B, T, H * V)
        return self.o_proj(nn.functional.silu(self.g_proj(hidden_states)) * o)


class RetNetBlock(GradientCheckpointingLayer):
    def __init__(self, config: RetNetConfig, layer_idx: int):
        super().__init__()
        self.retention_norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.retention = RetNetMultiScaleRetention(config, layer_idx)
        self.ffn_norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.ffn = GLU(config.hidden_size, config.intermediate_size, config.hidden_act)

    def forward(self, hidden_states, rotary, decay_norm, token_mask=None, cache=None):
        hidden_states = hidden_states + self.retention(
            self.retention_norm(hidden_states), rotary, decay_norm, token_mask, cache
        )
        return hidden_states + self.ffn(self.ffn_norm(hidden_states))


class RetNetPreTrainedModel(PaperzooHubMixin, PreTrainedModel):
    config: RetNetConfig
    config_class = RetNetConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["RetNetBlock"]
    _is_stateful = True

    def _init_weights(self, module):
        """torchscale's init: xavier_uniform with gain 2^-2.5 on q/k/v/g, gain 1 on the output projection,
        embeddings N(0, d^-½); everything else is transformers' default (N(0, initializer_range))."""
        super()._init_weights(module)
        from transformers import initialization as init

        if isinstance(module, RetNetMultiScaleRetention):
            for proj in (module.q_proj, module.k_proj, module.v_proj, module.g_proj):
                init.xavier_uniform_(proj.weight, gain=2**-2.5)
            init.xavier_uniform_(module.o_proj.weight)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=self.config.hidden_size**-0.5)
            if module.padding_idx is not None:
                init.zeros_(module.weight[module.padding_idx])


class RetNetModel(RetNetPreTrainedModel):
    def __init__(self, config: RetNetConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, config.pad_token_id)
        self.layers = nn.ModuleList(RetNetBlock(config, i) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary = InterleavedRotary(config.hidden_size // config.num_attention_heads, config.rope_theta)
        self.gradient_checkpointing = False
        self.post_init()

    def _positions(self, B, T, device, position_ids, attention_mask, cache) -> torch.Tensor:
        """Absolute position of each new token in its own row [B, T]: given, else counted from the mask's real
        tokens (left padding), else continuing the cache."""
        if position_ids is not None:
            if position_ids.shape[-1] != T:
                raise ValueError(f"position_ids has shape {tuple(position_ids.shape)}; expected [B, T=({B}, {T})]")
            return position_ids.expand(B, T).clamp(min=0)
        if attention_mask is not None:
            return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -T:]
        offset = cache.get_recurrent_state(0, _POSITION) if cache is not None else None
        offset = torch.zeros(B, dtype=torch.long, device=device) if offset is None else offset
        return offset[:, None] + torch.arange(T, device=device)

    @cache_forward
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPast:
        reject_unused_kwargs(self, kwargs)
        check_lm_inputs(self.config, input_ids, inputs_embeds, attention_mask)
        if cache is not None:
            check_recurrent_cache(cache, self.config.num_hidden_layers)
        cache = resolve_cache(self, cache, use_cache)
        output_hidden_states = output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states

        hidden_states = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds  # [B, T, d]
        if self.config.scale_embedding:
            hidden_states = hidden_states * self.config.hidden_size**0.5
        B, T, _ = hidden_states.shape
        positions = self._positions(B, T, hidden_states.device, position_ids, attention_mask, cache)  # [B, T]
        rotary = self.rotary(positions, hidden_states.dtype)
        acc = torch.promote_types(hidden_states.dtype, torch.float32)
        log_decay = retnet_log_decay(self.config.num_attention_heads, hidden_states.device, acc)
        # Σ_{i≤n} γ^i = (1 − γ^(n+1)) / (1 − γ): D̃'s normaliser at absolute position n
        decay_sum = torch.expm1((positions[..., None] + 1).to(acc) * log_decay) / torch.expm1(log_decay)
        decay_norm = decay_sum.rsqrt()  # [B, T, H]
        token_mask = attention_mask[:, -T:].to(hidden_states.dtype) if attention_mask is not None else None

        all_hidden = [] if output_hidden_states else None
        for layer in self.layers:
            if all_hidden is not None:
                all_hidden.append(hidden_states)
            hidden_states = layer(hidden_states, rotary, decay_norm, token_mask, cache)
        hidden_states = self.norm(hidden_states)
        if all_hidden is not None:
            all_hidden.append(hidden_states)
        if cache is not None:
            write_state(cache, 0, _POSITION, positions[:, -1] + 1)
            count_tokens(cache, T)
        return BaseModelOutputWithPast(
            last_hidden_state=hidden_states, cache=cache, hidden_states=tuple(all_hidden) if all_hidden else None
        )


class RetNetForCausalLM(RetNetPreTrainedModel, GenerationMixin):
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: RetNetConfig):
        super().__init__(config)
        self.model = RetNetModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def _init_weights(self, module):
        super()._init_weights(module)
        if module is getattr(self, "lm_head", None):  # torchscale's output_projection: N(0, d^-½)
            from transformers import initialization as init

            init.normal_(module.weight, mean=0.0, std=self.config.hidden_size**-0.5)

    @cache_forward
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        loss_kwargs = {name: kwargs.pop(name) for name in LOSS_KWARGS if name in kwargs}
        out = self.model(input_ids, attention_mask, position_ids, cache, inputs_embeds, use_cache,
                         output_hidden_states, return_dict=True, **kwargs)
        # an int keeps the last `logits_to_keep` positions (0: all); a tensor lists the positions to keep
        keep = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
        if labels is not None and self.config.fused_linear_cross_entropy:
            # the loss from every position's hidden state, without [B, T, vocab] logits; `logits` holds only the
            # positions logits_to_keep asks for (None for the default 0)
            loss = self._fused_loss(out.last_hidden_state, labels, **loss_kwargs)
            wanted = not isinstance(logits_to_keep, int) or logits_to_keep != 0
            logits = self.lm_head(out.last_hidden_state[:, keep]) if wanted else None
            return CausalLMOutputWithPast(loss=loss, logits=logits, cache=out.cache, hidden_states=out.hidden_states)
        logits = self.lm_head(out.last_hidden_state[:, keep])
        loss = None
        if labels is not None:  # loss_function shifts, ignores -100 and honours Trainer's num_items_in_batch
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.vocab_size, **loss_kwargs)
        return CausalLMOutputWithPast(loss=loss, logits=logits, cache=out.cache, hidden_states=out.hidden_states)

    def _fused_loss(self, hidden_states, labels, num_items_in_batch=None, ignore_index=-100, shift_labels=None):
        """transformers' ForCausalLMLoss through `linear_cross_entropy`: position t predicts labels[t + 1] (the
        last position is ignored) unless `shift_labels` is given; the mean over non-ignored positions, or with
        Trainer's `num_items_in_batch` the sum divided by it. hidden_states [B, T, d], labels [B, T]."""
        if shift_labels is None:
            shift_labels = nn.functional.pad(labels, (0, 1), value=ignore_index)[..., 1:]
        weight = self.lm_head.weight  # [vocab, d]
        hidden = hidden_states.reshape(-1, hidden_states.shape[-1]).to(weight.dtype)  # [B·T, d]
        targets = shift_labels.reshape(-1).to(device=hidden.device, dtype=torch.long)  # [B·T]
        backend = self.config.kernel_backend
        if num_items_in_batch is None:
            return linear_cross_entropy(hidden, weight, targets, ignore_index, backend=backend)
        total = linear_cross_entropy(hidden, weight, targets, ignore_index, backend=backend, reduction="sum")
        if torch.is_tensor(num_items_in_batch):
            num_items_in_batch = num_items_in_batch.to(total.device)
        return total / num_items_in_batch


class RetNetForSequenceClassification(RetNetPreTrainedModel):
    """Classifies a sequence from the final hidden state of its last real token (the recurrent summary)."""

    # its loss is a mean over the batch, not a sum over Trainer's num_items_in_batch: Trainer must divide by the
    # gradient-accumulation steps itself
    accepts_loss_kwargs = False

    def __init__(self, config: RetNetConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.model = RetNetModel(config)
        self.score = nn.Linear(config.hidden_size, config.num_labels, bias=False)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        output_hidden_states: bool | None = None,
        **kwargs,
    ) -> SequenceClassifierOutputWithPast:
        out = self.model(input_ids, attention_mask, position_ids, None, inputs_embeds, False, output_hidden_states,
                         return_dict=True, **kwargs)
        logits = self.score(out.last_hidden_state)  # [B, T, labels]
        B, T = logits.shape[:2]
        if attention_mask is None and input_ids is not None and self.config.pad_token_id is not None:
            attention_mask = input_ids != self.config.pad_token_id
        if attention_mask is not None:  # rightmost real token serves left and right padding alike
            idx = torch.arange(T, device=logits.device)
            last = (idx * attention_mask[:, -T:].to(device=logits.device, dtype=torch.long)).argmax(-1)
        else:
            last = torch.full((B,), T - 1, device=logits.device)
        pooled = logits[torch.arange(B, device=logits.device), last]
        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, pooled_logits=pooled, config=self.config)
        return SequenceClassifierOutputWithPast(loss=loss, logits=pooled, hidden_states=out.hidden_states)


__all__ = [
    "RetNetForCausalLM",
    "RetNetForSequenceClassification",
    "RetNetModel",
    "RetNetPreTrainedModel",
]

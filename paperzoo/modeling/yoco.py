"""YOCO (Sun et al., "You Only Cache Once: Decoder-Decoder Architectures for Language Models", arXiv 2405.05254).

Faithful to the official microsoft/unilm `YOCO/yoco/models/decoder/` (yoco.py, gate_retention.py,
sliding_window_attention.py, cross_attention.py):

    X⁰ = √d · Embed(tokens)
    self-decoder (L/2 layers):   Y = X + ESA(RMSNorm(X)),   X' = Y + SwiGLU(RMSNorm(Y))
    shared K/V, computed ONCE:   K̂ = RoPE(RMSNorm(X^{L/2}) W_K),   V̂ = RMSNorm(X^{L/2}) W_V
    cross-decoder (L/2 layers):  Y = X + Attention(RoPE(RMSNorm(X) W_Q), K̂, V̂),   X' = Y + SwiGLU(RMSNorm(Y))
    logits = RMSNorm(X^L) W_out

ESA is gated retention (gRet: per-token, per-head decay γ_t = sigmoid(x_t W_γ)^(1/τ), τ = 16; MHGR(X) =
W_O(swish(X W_G) ⊙ RMSNorm_h(gRet_h(X)))) or sliding-window attention (a query sees itself and the C − 1 keys
before it). Rotary everywhere is the interleaved, `linspace`-frequency variant of the official code.

What the architecture is for: the cache holds the self-decoder's O(1) state (or a K/V window) per layer and ONE
global K/V, not one per layer; and during prefill only the self-decoder and the K/V projection must run over the
prompt (prefill early exit): the cross-decoder runs only where logits are needed (`logits_to_keep`, 1 in `generate`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.cache_utils import Cache
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast

from ..configuration.yoco import YOCOConfig
from ..kernels.gated_retention import gated_retention
from .cache import count_tokens, resolve_cache, write_state
from .hub_mixin import PaperzooHubMixin
from .inputs import LOSS_KWARGS, cache_forward, check_lm_inputs, reject_unused_kwargs
from .layers import GLU, InterleavedRotary, RMSNorm, apply_rotary

_STATE = 0  # the gated-retention state's slot in its cache layer: S [B, H, K, V] (fp32)


def visible_keys(q_index, k_index, key_real, window: int | None) -> torch.Tensor:
    """Which keys each query may attend to, [B or 1, 1, Tq, S] bool: causal (key index ≤ query index, in the cache's
    index space), inside the window if any, and not padding (`key_real` [B, S]). A padded query still sees itself,
    so that no row is empty (an empty softmax row is NaN; padded rows are never read)."""
    diff = q_index[..., :, None] - k_index[None, :]  # [Tq, S]
    ok = diff >= 0
    if window is not None:
        ok = ok & (diff < window)
    if key_real is not None:
        ok = ok[None] & (key_real[:, None, :] | (diff == 0)[None])  # [B, Tq, S]
    return ok[:, None] if ok.dim() == 3 else ok[None, None]


def attend(q, k, v, q_index, k_index, key_real, window=None) -> torch.Tensor:
    """softmax(q kᵀ / √D) v over the visible keys; q [B, H, Tq, D], k and v [B, Hkv, S, D] (GQA when Hkv < H).
    Skips building a mask where SDPA needs none: no padding, no window and either every query the last position
    (decoding) or the queries are exactly the keys (a full causal pass)."""
    gqa = k.shape[1] != q.shape[1]
    plain = key_real is None and window is None and isinstance(q_index, range)
    if plain and len(q_index) == k.shape[2] and q_index.start == 0:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
    if plain and len(q_index) == 1 and q_index[0] == k.shape[2] - 1:
        return F.scaled_dot_product_attention(q, k, v, enable_gqa=gqa)
    if isinstance(q_index, range):
        q_index = torch.arange(q_index.start, q_index.stop, device=q.device)
    mask = visible_keys(q_index, k_index, key_real, window)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)


def query_index(past, T: int, device):
    """Cache indices of T new tokens after `past` cached ones: a `range` when `past` is a Python int (dynamic caches,
    no cache), a tensor when it is one (static caches, so that compiled decoding does not recompile per step)."""
    if isinstance(past, torch.Tensor):
        return past.to(device) + torch.arange(T, device=device)
    return range(past, past + T)


def key_padding(attention_mask: torch.Tensor | None, kv_offset: int, kv_length: int) -> torch.Tensor | None:
    """attention_mask [B, past + T] (1 = token) → whether each of the kv_length keys from index kv_offset is a real
    token [B, kv_length]. Keys beyond the mask (a static cache's empty slots) count as real: causality hides them."""
    if attention_mask is None:
        return None
    real = attention_mask.bool()
    if kv_offset + kv_length > real.shape[1]:
        real = F.pad(real, (0, kv_offset + kv_length - real.shape[1]), value=True)
    return real[:, kv_offset : kv_offset + kv_length]


class YOCOGatedRetention(nn.Module):
    """Multi-head gated retention (official gate_retention.py): per head and token, the decay is data-dependent,
    log γ_t = logsigmoid(x_t W_γ) / τ, and S_t = γ_t S_{t−1} + k_tᵀ v_t, o_t = q_t S_t."""

    def __init__(self, config: YOCOConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.num_heads = config.num_self_heads
        self.head_dim = config.hidden_size // config.num_self_heads
        self.gate_logit_normalizer = config.gate_logit_normalizer
        self.chunk_size = config.chunk_size
        self.kernel_backend = config.kernel_backend
        d = config.hidden_size
        self.q_proj = nn.Linear(d, d, bias=False)
        self.k_proj = nn.Linear(d, d, bias=False)
        self.v_proj = nn.Linear(d, d, bias=False)
        self.g_proj = nn.Linear(d, d, bias=False)
        self.gt_proj = nn.Linear(d, self.num_heads, bias=False)  # W_γ: one decay logit per head
        self.o_proj = nn.Linear(d, d, bias=False)
        self.group_norm = RMSNorm(self.head_dim, eps=config.rms_norm_eps, elementwise_affine=False)

    def forward(self, x, rotary, token_mask, attention_mask, cache):
        B, T, _ = x.shape
        H, K = self.num_heads, self.head_dim
        sin, cos = rotary
        q = apply_rotary(self.q_proj(x).view(B, T, H, K), sin, cos)
        k = apply_rotary(self.k_proj(x).view(B, T, H, K), sin, cos) * K**-0.5
        v = self.v_proj(x).view(B, T, H, K)
        # the decay in fp32 whatever x's dtype: in bf16, γ = sigmoid(·)^(1/16) ≥ 1 − 2^-9 would round to exactly 1
        acc = torch.promote_types(x.dtype, torch.float32)
        log_decay = F.logsigmoid(self.gt_proj(x).to(acc)) / self.gate_logit_normalizer  # [B, T, H]
        if token_mask is not None:  # padding neither enters the state nor decays it
            k, v = k * token_mask[..., None, None], v * token_mask[..., None, None]
            log_decay = log_decay * token_mask[..., None].to(acc)

        state = cache.get_recurrent_state(self.layer_idx, _STATE) if cache is not None else None
        if state is not None and state.shape != (B, H, K, K):
            raise ValueError(f"cache layer {self.layer_idx} holds a state of shape {tuple(state.shape)}, but this "
                             f"model needs {(B, H, K, K)}: the cache comes from another model or batch")
        o, state = gated_retention(q, k, v, log_decay, state, output_final_state=cache is not None,
                                   chunk_size=self.chunk_size, backend=self.kernel_backend)  # [B, T, H, K]
        if cache is not None:
            write_state(cache, self.layer_idx, _STATE, state)
        o = self.group_norm(o).reshape(B, T, H * K)
        return self.o_proj(F.silu(self.g_proj(x)) * o)


class YOCOSlidingWindowAttention(nn.Module):
    """Sliding-window attention (official sliding_window_attention.py): query i sees keys i − C < j ≤ i. Its cache
    layer keeps only the last C − 1 keys (transformers' sliding-window layers)."""

    def __init__(self, config: YOCOConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.num_heads = config.num_self_heads
        self.head_dim = config.hidden_size // config.num_self_heads
        self.window = config.sliding_window
        d = config.hidden_size
        self.q_proj = nn.Linear(d, d, bias=False)
        self.k_proj = nn.Linear(d, d, bias=False)
        self.v_proj = nn.Linear(d, d, bias=False)
        self.o_proj = nn.Linear(d, d, bias=False)

    def forward(self, x, rotary, token_mask, attention_mask, cache):
        B, T, _ = x.shape
        H, D = self.num_heads, self.head_dim
        sin, cos = rotary
        q = apply_rotary(self.q_proj(x).view(B, T, H, D), sin, cos).transpose(1, 2)  # [B, H, T, D]
        k = apply_rotary(self.k_proj(x).view(B, T, H, D), sin, cos).transpose(1, 2)
        v = self.v_proj(x).view(B, T, H, D).transpose(1, 2)
        past, kv_offset, kv_length = 0, 0, T
        if cache is not None:  # sizes before the update: where the returned keys sit in the cache's index space
            past = cache.layers[self.layer_idx].get_seq_length()
            kv_length, kv_offset = cache.layers[self.layer_idx].get_mask_sizes(T)
            k, v = cache.update(k, v, self.layer_idx)
            k, v = k[:, :, :kv_length], v[:, :, :kv_length]
        k_index = kv_offset + torch.arange(k.shape[2], device=x.device)
        o = attend(q, k, v, query_index(past, T, x.device), k_index,
                   key_padding(attention_mask, kv_offset, k.shape[2]), self.window)
        return self.o_proj(o.transpose(1, 2).reshape(B, T, H * D))


class YOCOSharedKV(nn.Module):
    """The single global K/V (official CrossDecoder's kv_layer_norm, k_proj, v_proj): computed once from the
    self-decoder's output, rotary applied to K before caching, stored once for every cross-decoder layer."""

    def __init__(self, config: YOCOConfig):
        super().__init__()
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.k_proj = nn.Linear(config.hidden_size, self.num_kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(config.hidden_size, self.num_kv_heads * self.head_dim, bias=False)

    def forward(self, x, rotary, cache, layer_idx):
        B, T, _ = x.shape
        h = self.norm(x)
        k = apply_rotary(self.k_proj(h).view(B, T, self.num_kv_heads, self.head_dim), *rotary).transpose(1, 2)
        v = self.v_proj(h).view(B, T, self.num_kv_heads, self.head_dim).transpose(1, 2)  # [B, Hkv, T, D]
        if cache is not None:  # all keys so far: [B, Hkv, S, D] (a static cache returns its whole buffer)
            k, v = cache.update(k, v, layer_idx)
        return k, v


class YOCOCrossAttention(nn.Module):
    """Cross-attention of the cross-decoder (official cross_attention.py): its own queries, the shared K/V, causal."""

    def __init__(self, config: YOCOConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.q_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=False)
        self.o_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=False)

    def forward(self, x, rotary, key, value, q_index, key_real):
        B, T, _ = x.shape
        q = apply_rotary(self.q_proj(x).view(B, T, self.num_heads, self.head_dim), *rotary).transpose(1, 2)
        k_index = torch.arange(key.shape[2], device=x.device)
        o = attend(q, key, value, q_index, k_index, key_real)  # [B, H, T, D]
        return self.o_proj(o.transpose(1, 2).reshape(B, T, self.num_heads * self.head_dim))


class YOCOLayer(GradientCheckpointingLayer):
    """Pre-norm block of either decoder: X + mixer(RMSNorm(X)), then + SwiGLU(RMSNorm(·))."""

    def __init__(self, config: YOCOConfig, mixer: nn.Module):
        super().__init__()
        self.mixer_norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.mixer = mixer
        self.ffn_norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.ffn = GLU(config.hidden_size, config.intermediate_size, "silu")

    def forward(self, hidden_states, *mixer_args):
        hidden_states = hidden_states + self.mixer(self.mixer_norm(hidden_states), *mixer_args)
        return hidden_states + self.ffn(self.ffn_norm(hidden_states))


class YOCOPreTrainedModel(PaperzooHubMixin, PreTrainedModel):
    config: YOCOConfig
    config_class = YOCOConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["YOCOLayer"]
    _is_stateful = True

    def _init_weights(self, module):
        """The official init (model_parallel_init.py): xavier_uniform with gain 2^-2.5 on gRet's q/k/v/g/γ
        projections and 2^-1 on its output; PyTorch's default Linear init (kaiming_uniform, a = √5) on every other
        projection and the output layer; embeddings N(0, d^-½); norms 1."""
        import math

        from transformers import initialization as init

        if isinstance(module, nn.Linear):
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=self.config.hidden_size**-0.5)
            if module.padding_idx is not None:
                init.zeros_(module.weight[module.padding_idx])
        elif isinstance(module, RMSNorm) and module.weight is not None:
            init.ones_(module.weight)
        elif isinstance(module, YOCOGatedRetention):
            for proj in (module.q_proj, module.k_proj, module.v_proj, module.g_proj, module.gt_proj):
                init.xavier_uniform_(proj.weight, gain=2**-2.5)
            init.xavier_uniform_(module.o_proj.weight, gain=2**-1)


class YOCOModel(YOCOPreTrainedModel):
    def __init__(self, config: YOCOConfig):
        super().__init__(config)
        half = config.num_self_layers
        self.kv_layer_idx = half  # the cache layer that stores the shared K/V
        self_mixer = YOCOGatedRetention if config.self_decoder == "gated_retention" else YOCOSlidingWindowAttention
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, config.pad_token_id)
        self.self_layers = nn.ModuleList(YOCOLayer(config, self_mixer(config, i)) for i in range(half))
        self.shared_kv = YOCOSharedKV(config)
        self.cross_layers = nn.ModuleList(YOCOLayer(config, YOCOCrossAttention(config)) for _ in range(half))
        self.norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.self_rotary = InterleavedRotary(config.hidden_size // config.num_self_heads, config.rope_theta)
        self.cross_rotary = InterleavedRotary(config.hidden_size // config.num_attention_heads, config.rope_theta)
        self.gradient_checkpointing = False
        self.post_init()

    def _check_cache(self, cache) -> None:
        layers = getattr(cache, "layers", [])
        half = self.config.num_self_layers
        expected = [self.config.self_decoder] * half + ["shared K/V"] + ["reuse"] * (half - 1)
        found = []
        if isinstance(cache, Cache):
            for i, layer in enumerate(layers):
                if cache.is_dummy[i]:
                    found.append("reuse")
                elif cache.is_linear[i]:
                    found.append("gated_retention")
                elif cache.is_sliding[i]:
                    found.append("sliding_window")
                else:
                    found.append("shared K/V")
        if found != expected:
            raise ValueError(f"cache must be a transformers Cache built for this model (DynamicCache(config="
                             f"model.config) or StaticCache): layers {expected}; got {type(cache).__name__} "
                             f"with layers {found}")

    def _positions(self, B, T, position_ids, attention_mask, past, device) -> torch.Tensor:
        """Rotary position of each new token in its own row [B, T]: given, else counted from the mask's real tokens
        (left padding), else continuing the cache."""
        if position_ids is not None:
            if position_ids.shape[-1] != T:
                raise ValueError(f"position_ids has shape {tuple(position_ids.shape)}; expected [B, T=({B}, {T})]")
            return position_ids.expand(B, T).clamp(min=0)
        if attention_mask is not None:
            return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -T:]
        index = query_index(past, T, device)
        index = torch.arange(index.start, index.stop, device=device) if isinstance(index, range) else index
        return index.expand(B, T)

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
        output_positions: int | torch.Tensor = 0,
        **kwargs,
    ) -> BaseModelOutputWithPast:
        r"""output_positions: where the cross-decoder runs and hidden states are returned: 0 all positions, n > 0 the
        last n, a tensor of indices those positions. The self-decoder and the shared K/V always cover every token
        (prefill early exit: `generate` asks for the last position only)."""
        reject_unused_kwargs(self, kwargs)
        check_lm_inputs(self.config, input_ids, inputs_embeds, attention_mask)
        if cache is not None:
            self._check_cache(cache)
        cache = resolve_cache(self, cache, use_cache)
        output_hidden_states = (output_hidden_states if output_hidden_states is not None
                                else self.config.output_hidden_states)

        hidden_states = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds  # [B, T, d]
        hidden_states = hidden_states * self.config.hidden_size**0.5
        B, T, _ = hidden_states.shape
        past = cache.get_seq_length(self.kv_layer_idx) if cache is not None else 0
        if isinstance(past, torch.Tensor):  # a static layer's own counter, which its update advances in place
            past = past.clone()
        if attention_mask is not None and isinstance(past, int) and attention_mask.shape[1] != past + T:
            raise ValueError(f"attention_mask has {attention_mask.shape[1]} columns; with {past} cached tokens and "
                             f"T={T} new ones it must have past + T = {past + T} (1 = token, 0 = padding)")
        positions = self._positions(B, T, position_ids, attention_mask, past, hidden_states.device)  # [B, T]
        token_mask = attention_mask[:, -T:].to(hidden_states.dtype) if attention_mask is not None else None
        if attention_mask is not None and not torch.compiler.is_compiling() and bool(attention_mask.all()):
            attention_mask = token_mask = None  # no padding: masks SDPA can skip

        keep, restore = self._kept(output_positions, T, hidden_states.device)  # range, or sorted positions [Tk]
        # hidden states need the cross-decoder at every position: it then runs on all, and the kept rows are taken
        cross_rows = range(0, T) if output_hidden_states else keep
        all_hidden = [] if output_hidden_states else None
        # prefill early exit, in segments: without gradients, a long prompt runs through the self-decoder and the
        # shared K/V a segment at a time (activations bounded by the segment); only the rows the cross-decoder needs
        # go on
        piece = self.config.prefill_segment_size if (cache is not None and not torch.is_grad_enabled()
                                                   and not output_hidden_states) else T
        cross_input, key, value = [], None, None
        for start in range(0, T, piece):
            stop = min(start + piece, T)
            h = hidden_states[:, start:stop]  # [B, P, d]
            rows = positions[:, start:stop]
            self_rotary = self.self_rotary(rows, h.dtype)
            piece_mask = token_mask[:, start:stop] if token_mask is not None else None
            # padding of every key up to this piece's last token, in the cache's index space
            seen = attention_mask[:, : attention_mask.shape[1] - T + stop] if attention_mask is not None else None
            for layer in self.self_layers:
                if all_hidden is not None:
                    all_hidden.append(h)
                h = layer(h, self_rotary, piece_mask, seen, cache)
            key, value = self.shared_kv(h, self.cross_rotary(rows, h.dtype), cache, self.kv_layer_idx)
            cross_input.append(h if piece == T else self._rows_in(h, cross_rows, start, stop))

        hidden_states = torch.cat(cross_input, dim=1) if len(cross_input) > 1 else cross_input[0]  # [B, Tk, d]
        if piece == T and cross_rows != range(0, T):
            hidden_states = hidden_states[:, self._as_index(cross_rows)]
        cross_rotary = self.cross_rotary(positions[:, self._as_index(cross_rows)], hidden_states.dtype)
        q_index = self._shift(cross_rows, past)
        key_real = key_padding(attention_mask, 0, key.shape[2])
        for layer in self.cross_layers:
            if all_hidden is not None:
                all_hidden.append(hidden_states)
            hidden_states = layer(hidden_states, cross_rotary, key, value, q_index, key_real)
        hidden_states = self.norm(hidden_states)
        if all_hidden is not None:
            all_hidden.append(hidden_states)
            hidden_states = hidden_states[:, self._as_index(keep)]
        if restore is not None:  # the positions in the order they were asked for
            hidden_states = hidden_states[:, restore]
        if cache is not None:
            count_tokens(cache, T)
        return BaseModelOutputWithPast(
            last_hidden_state=hidden_states, cache=cache, hidden_states=tuple(all_hidden) if all_hidden else None
        )

    @staticmethod
    def _kept(output_positions, T: int, device):
        """(positions whose hidden states are returned, permutation back to the order asked for, or None): a range
        (all, or the last n), or a tensor of indices (negative ones count from the end) sorted in prompt order, the
        order in which segments produce them."""
        if isinstance(output_positions, torch.Tensor):
            index = output_positions.to(device=device, dtype=torch.long).flatten()
            if not torch.compiler.is_compiling() and index.numel() and not ((index >= -T) & (index < T)).all():
                raise ValueError(f"output_positions (logits_to_keep) holds {index.tolist()}: indices of a "
                                 f"{T}-token input must lie in [-{T}, {T})")
            rows, order = torch.where(index < 0, index + T, index).sort(stable=True)
            return rows, order.argsort()
        if isinstance(output_positions, bool) or not isinstance(output_positions, int) or output_positions < 0:
            raise ValueError(f"output_positions (logits_to_keep)={output_positions!r} must be an int >= 0 or a "
                             f"tensor of indices")
        if output_positions == 0 or output_positions >= T:
            return range(0, T), None
        return range(T - output_positions, T), None

    @staticmethod
    def _as_index(rows):
        """A range of positions as a slice (a view), a tensor of indices as itself."""
        return slice(rows.start, rows.stop) if isinstance(rows, range) else rows

    @staticmethod
    def _rows_in(h, rows, start: int, stop: int) -> torch.Tensor:
        """The rows of piece [start, stop) of the prompt (h [B, P, d]) that the cross-decoder needs."""
        if isinstance(rows, range):
            lo, hi = max(rows.start, start), min(rows.stop, stop)
            return h[:, lo - start : max(hi, lo) - start]
        return h[:, rows[(rows >= start) & (rows < stop)] - start]

    @staticmethod
    def _shift(rows, past):
        """Cache indices of the cross-decoder's queries: `past` cached tokens come before the T new ones."""
        if isinstance(rows, range) and isinstance(past, int):
            return range(past + rows.start, past + rows.stop)
        index = torch.arange(rows.start, rows.stop) if isinstance(rows, range) else rows
        return past + index.to(past.device if isinstance(past, torch.Tensor) else index.device)


class YOCOForCausalLM(YOCOPreTrainedModel, GenerationMixin):
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: YOCOConfig):
        super().__init__(config)
        self.model = YOCOModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def create_masks_for_generate(self, attention_mask=None, **kwargs):
        """generate() turns the 2D padding mask into 4D masks for compileable (static) caches; YOCO's layers build
        their own from the 2D mask and each cache layer's index space (window, shared K/V), so it stays 2D."""
        return attention_mask

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
        r"""logits_to_keep: 0 all positions, n the last n, a tensor of indices. Fewer positions is also less work:
        the cross-decoder runs only there (prefill early exit)."""
        loss_kwargs = {name: kwargs.pop(name) for name in LOSS_KWARGS if name in kwargs}
        if labels is not None and not (isinstance(logits_to_keep, int) and logits_to_keep == 0):
            raise ValueError(f"labels need logits at every position; got logits_to_keep={logits_to_keep!r}")
        out = self.model(input_ids, attention_mask, position_ids, cache, inputs_embeds, use_cache,
                         output_hidden_states, logits_to_keep, return_dict=True, **kwargs)
        logits = self.lm_head(out.last_hidden_state)
        loss = None
        if labels is not None:  # loss_function shifts, ignores -100 and honours Trainer's num_items_in_batch
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.vocab_size, **loss_kwargs)
        return CausalLMOutputWithPast(loss=loss, logits=logits, cache=out.cache, hidden_states=out.hidden_states)


__all__ = ["YOCOForCausalLM", "YOCOModel", "YOCOPreTrainedModel"]

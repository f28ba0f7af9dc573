"""FocusLLM (Li et al., "FocusLLM: Precise Understanding of Long Context by Dynamic Condensing", arXiv 2408.11745):
the building blocks that act on an unchanged transformers decoder-only LM (Llama, Mistral, Qwen2/3, Gemma...).

The method, per the paper (§2.2-2.3) and the official code:
1. the memory (everything before the local window) is cut into chunks C_1..C_k; each chunk gets the dynamic prompt
   (a suffix of the local context) appended: Ĉ_i = C_i ⊕ [BOS] ⊕ prompt;
2. the LAST token of each Ĉ_i is the candidate token: in every layer it is projected with its own trainable copies
   of the attention projections (W_Q^c, W_K^c, W_V^c, W_O^c), while every other token uses the frozen ones;
3. the candidates' per-layer keys and values, moved to positions 0..k−1, are a KV prefix for the frozen model's
   pass over the local context.

Here the k chunks are one left-padded batch (positions counted per row), not the official sequential loop: the
candidate keys come out at the position each row ends at, and are rotated to their prefix position afterwards
(rotary positions compose: R(a)R(b) = R(a + b)).
"""

from __future__ import annotations

import contextlib
import contextvars
import copy

import torch
from torch import nn
from transformers.cache_utils import DynamicCache

# whether the forward running now is a chunk pass, whose last position in every row is a candidate token
_CANDIDATE_LAST = contextvars.ContextVar("paperzoo_focusllm_candidate_last", default=False)


@contextlib.contextmanager
def candidate_pass():
    """Within it, every CandidateLinear projects the last position of each row with its candidate weights."""
    token = _CANDIDATE_LAST.set(True)
    try:
        yield
    finally:
        _CANDIDATE_LAST.reset(token)


class CandidateLinear(nn.Module):
    """A frozen base projection and its trainable candidate copy (initialised from the base): base(x) at every
    position, except the last one of each row during a `candidate_pass()`, which gets candidate(x)."""

    def __init__(self, base: nn.Linear):
        super().__init__()
        self.base = base
        self.candidate = copy.deepcopy(base)
        self.base.requires_grad_(False)
        self.candidate.requires_grad_(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x [B, T, in]
        if not _CANDIDATE_LAST.get():
            return self.base(x)
        return torch.cat([self.base(x[:, :-1]), self.candidate(x[:, -1:])], dim=1)  # [B, T, out]


def attach_candidates(model: nn.Module, module_names=("q_proj", "k_proj", "v_proj", "o_proj")) -> list[str]:
    """Swap each decoder layer's attention projections named in `module_names` for CandidateLinear (in place) and
    freeze everything else; returns the swapped module paths. The last layer's query and output copies are not
    created: only the candidates' keys and values leave a chunk pass, so they would never receive a gradient."""
    layers = model.get_decoder().layers
    for p in model.parameters():
        p.requires_grad_(False)
    swapped = []
    for i, layer in enumerate(layers):
        attention = getattr(layer, "self_attn", None)
        if attention is None:
            raise ValueError(f"decoder layer {i} ({type(layer).__name__}) has no `self_attn`: FocusLLM needs "
                             f"attention layers with separate projections {list(module_names)}")
        for name in module_names:
            if i == len(layers) - 1 and name in ("q_proj", "o_proj"):
                continue
            base = getattr(attention, name, None)
            if not isinstance(base, nn.Linear):
                raise ValueError(f"candidate_modules names {name!r}, but layer {i}'s attention "
                                 f"({type(attention).__name__}) has no nn.Linear of that name (fused QKV "
                                 f"projections are not supported); it has {[n for n, _ in attention.named_children()]}")
            setattr(attention, name, CandidateLinear(base))
            swapped.append(f"layers.{i}.self_attn.{name}")
    return swapped


def chunk_rows(chunks: list[torch.Tensor], prompt: torch.Tensor, bos_token_id: int | None, pad_token_id: int):
    """The chunk pass's batch: row i = C_i ⊕ [BOS] ⊕ prompt, left-padded. Returns (ids [k, L], attention mask
    [k, L], position ids [k, L], counted per row from its first real token)."""
    tail = prompt if bos_token_id is None else torch.cat([prompt.new_tensor([bos_token_id]), prompt])
    rows = [torch.cat([c, tail]) for c in chunks]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long, device=prompt.device)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, width - len(r):], mask[i, width - len(r):] = r, 1
    return ids, mask, (mask.cumsum(-1) - 1).clamp(min=0)


def encode_candidates(model: nn.Module, ids, attention_mask, position_ids) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One batched chunk pass; per layer the candidates' (key, value) [k, H_kv, 1, D], the key rotated at the
    position its row ends at (transformers caches keys after rotary)."""
    cache = DynamicCache(config=model.config)
    with candidate_pass():
        model(input_ids=ids, attention_mask=attention_mask, position_ids=position_ids, cache=cache, use_cache=True,
              logits_to_keep=1)
    return [(layer.keys[:, :, -1:], layer.values[:, :, -1:]) for layer in cache.layers]


def move_keys(model: nn.Module, keys: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotary keys [k, H, 1, D] moved by `shift` [k] positions (R(p + s) = R(s) R(p)), with the model's own rotary
    (rotate-half convention, as Llama-family models apply it)."""
    from transformers.models.llama.modeling_llama import rotate_half

    rotary = model.get_decoder().rotary_emb
    if getattr(rotary, "attention_scaling", 1.0) != 1.0:  # cos and sin are pre-scaled: a second rotation scales twice
        raise ValueError(f"rope_type={getattr(rotary, 'rope_type', None)!r} scales its rotary (attention_scaling="
                         f"{rotary.attention_scaling}); moving cached keys needs an unscaled rotation")
    cos, sin = rotary(keys, shift[:, None].to(keys.device))  # [k, 1, D]
    return keys * cos[:, None] + rotate_half(keys) * sin[:, None]


def candidate_prefix(model, chunks: list[torch.Tensor], prompt: torch.Tensor) -> DynamicCache:
    """The KV prefix of the final pass: every chunk's candidate, chunk i at position i (as the official code)."""
    config = model.config
    pad = config.pad_token_id if config.pad_token_id is not None else 0
    ids, mask, positions = chunk_rows(chunks, prompt, config.bos_token_id, pad)
    ends = positions[:, -1]  # [k]: each row's candidate position
    target = torch.arange(len(chunks), device=ends.device)
    prefix = DynamicCache(config=config)
    for layer_idx, (k, v) in enumerate(encode_candidates(model, ids, mask, positions)):
        k = move_keys(model, k, target - ends)  # [k, H, 1, D] at positions 0..k-1
        prefix.update(k.transpose(0, 2), v.transpose(0, 2), layer_idx)  # [1, H, k, D]
    return prefix


def split_input(ids: torch.Tensor, local_window: int, chunk_size: int, dynamic_prompt_len: int):
    """One sequence [T] → (memory chunks of `chunk_size` tokens (the last may be shorter), the dynamic prompt (the
    last `dynamic_prompt_len` tokens of the local context), the local context (the last `local_window` tokens))."""
    for name, value in (("local_window", local_window), ("chunk_size", chunk_size),
                        ("dynamic_prompt_len", dynamic_prompt_len)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name}={value!r} must be a positive integer")
    local = ids[-local_window:]
    memory = ids[: max(len(ids) - local_window, 0)]
    chunks = list(memory.split(chunk_size)) if len(memory) else []  # an empty tensor splits into one empty chunk
    return chunks, local[-dynamic_prompt_len:], local


def focus_logits(model, ids: torch.Tensor, local_window: int, chunk_size: int, dynamic_prompt_len: int
                 ) -> torch.Tensor:
    """Logits [ℓ, V] over the local context of one long sequence `ids` [T]: the memory condensed into one candidate
    per chunk (a KV prefix at positions 0..k−1), the frozen model over the local context at positions k..k+ℓ−1.
    A sequence no longer than `local_window` has no memory: the base model's own logits."""
    chunks, prompt, local = split_input(ids, local_window, chunk_size, dynamic_prompt_len)
    if not chunks:
        return model(input_ids=local[None], use_cache=False).logits[0]
    k, n = len(chunks), len(local)
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and k + n > limit:
        raise ValueError(f"{k} chunks of chunk_size={chunk_size} + local_window={n} need {k + n} positions, more "
                         f"than the base model's max_position_embeddings={limit}: raise chunk_size")
    prefix = candidate_prefix(model, chunks, prompt)
    out = model(input_ids=local[None], position_ids=torch.arange(k, k + n, device=ids.device)[None],
                attention_mask=torch.ones(1, k + n, dtype=torch.long, device=ids.device), cache=prefix,
                use_cache=True)
    return out.logits[0]


__all__ = ["CandidateLinear", "attach_candidates", "candidate_pass", "candidate_prefix", "chunk_rows",
           "encode_candidates", "focus_logits", "move_keys", "split_input"]

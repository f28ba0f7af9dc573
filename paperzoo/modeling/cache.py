"""Recurrent state in transformers' cache objects (infrastructure, not model math).

A recurrent model keeps its per-layer state in the `LinearAttentionLayer`s that `DynamicCache(config=...)` builds for
`layer_types == ["linear_attention", ...]`, in numbered slots (`config.number_of_conv_states`). Two things
transformers leaves to layers that never call `update_conv_state` (the short-convolution update of Mamba-style
mixers), and which these helpers do:
- `has_previous_state` is set only by `update_conv_state`: without it `get_recurrent_state` keeps returning None and
  every decoding step would restart from an empty state;
- the token count behind `cache.get_seq_length()` is advanced only by `update_conv_state`: without it a returned
  cache reports length 0, and `generate(full_ids, cache=cache)` feeds the whole prompt again on top of the state.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache, DynamicCache


def check_recurrent_cache(cache, num_layers: int) -> None:
    """ValueError unless `cache` is a transformers Cache of `num_layers` linear-attention layers."""
    layers = getattr(cache, "layers", [])
    if not isinstance(cache, Cache) or len(layers) != num_layers or not all(cache.is_linear):
        raise ValueError(
            f"cache must be a transformers Cache of {num_layers} linear-attention layers (as built by "
            f"DynamicCache(config=model.config)); got {type(cache).__name__} with {len(layers)} layers"
        )


def write_state(cache: Cache, layer_idx: int, slot: int, value: torch.Tensor) -> None:
    """Store `value` in `slot` of layer `layer_idx`, where `cache.get_recurrent_state(layer_idx, slot)` finds it."""
    cache.update_recurrent_state(value, layer_idx, slot)
    cache.layers[layer_idx].has_previous_state[slot] = True


def count_tokens(cache: Cache, num_tokens: int) -> None:
    """Advance the token count of every linear-attention layer by `num_tokens` (what `cache.get_seq_length()`
    reports for them; attention layers count the keys they hold themselves)."""
    for layer, linear in zip(cache.layers, cache.is_linear):
        if linear:
            layer.cumulative_length_linear.add_(num_tokens)


def resolve_cache(model, cache: Cache | None, use_cache: bool | None) -> Cache | None:
    """The cache a forward reads and updates: the one given (a given cache is never dropped: with use_cache=False or
    under activation checkpointing, which would run each layer's update twice, it is a ValueError), else a new
    DynamicCache when use_cache (None: config.use_cache outside training), else None."""
    checkpointing = getattr(model, "gradient_checkpointing", False) and model.training
    if cache is not None:
        if use_cache is False:
            raise ValueError("a cache was passed with use_cache=False: pass one or the other")
        if checkpointing:
            raise ValueError("a cache was passed to a model training with activation checkpointing, which recomputes "
                             "every layer and would update the cache twice")
        return cache
    if use_cache is None:
        use_cache = model.config.use_cache and not model.training
    return DynamicCache(config=model.config) if use_cache and not checkpointing else None

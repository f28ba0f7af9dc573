"""Input checks shared by every paperzoo model's `forward` (infrastructure, not model math)."""

from __future__ import annotations

import torch
from transformers.utils import can_return_tuple
from transformers.utils.deprecation import deprecate_kwarg

# Keyword arguments of transformers' loss functions (`model.loss_function`), which Trainer passes to `forward`
LOSS_KWARGS = ("num_items_in_batch", "ignore_index", "shift_labels")


def cache_forward(forward):
    """The decorators of every paperzoo `forward` that takes a cache: `return_dict=False` gives a tuple, and
    transformers' older names of the cache (`past_key_values=`, `cache_params=`, until 5.40) map to `cache=` with a
    FutureWarning; an old name given together with `cache=` is a ValueError."""
    forward = can_return_tuple(forward)
    for old in ("cache_params", "past_key_values"):
        forward = deprecate_kwarg(old, "5.40.0", new_name="cache", raise_if_both_names=True)(forward)
    return forward


def check_token_ids(input_ids: torch.Tensor, vocab_size: int) -> None:
    """ValueError naming the first id outside [0, vocab_size).

    The value check is a data-dependent branch, which `torch.export` cannot trace and `torch.compile` splits the graph
    at (a device sync per forward on CUDA): it runs in eager mode only; traced code still fails on a bad id, in the
    embedding lookup.
    """
    if torch.compiler.is_compiling() or not input_ids.numel():
        return
    outside = (input_ids < 0) | (input_ids >= vocab_size)
    if outside.any():
        raise ValueError(f"input_ids contains token id {input_ids[outside][0].item()}, outside the vocabulary "
                         f"[0, {vocab_size})")


def check_lm_inputs(config, input_ids, inputs_embeds, attention_mask) -> None:
    """ValueError unless exactly one of input_ids [B, T] / inputs_embeds [B, T, d] is given, with T ≥ 1 and ids in
    the vocabulary, and attention_mask (if any) is [B, past + T]."""
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError("pass exactly one of input_ids and inputs_embeds")
    given, name = (input_ids, "input_ids") if input_ids is not None else (inputs_embeds, "inputs_embeds")
    if given.dim() != (2 if input_ids is not None else 3):
        raise ValueError(f"{name} must be {'[B, T]' if input_ids is not None else '[B, T, d]'}; got shape "
                         f"{tuple(given.shape)}")
    B, T = given.shape[:2]
    if T == 0:
        raise ValueError(f"{name} has no tokens (shape {tuple(given.shape)}): a prompt needs at least one token, "
                         f"e.g. the BOS token (id {config.bos_token_id})")
    if input_ids is not None:
        check_token_ids(input_ids, config.vocab_size)
    if attention_mask is not None and (attention_mask.dim() != 2 or attention_mask.shape[0] != B
                                       or attention_mask.shape[1] < T):
        raise ValueError(
            f"attention_mask must be [B, past + T] with B={B}, T={T} (1 = token, 0 = padding); "
            f"got shape {tuple(attention_mask.shape)}"
        )


def reject_unused_kwargs(model: torch.nn.Module, kwargs: dict) -> None:
    """TypeError for keyword arguments `forward` received but does not use.

    transformers' forwards take `**kwargs` and drop what they do not know, so a misspelt or unsupported argument
    (`past_key_values=` before the deprecation mapping, `cu_seq_lens_q=` for packed rows, ...) would silently change
    the result. What remains here after a forward has taken its own arguments must be empty, except for the ones
    that ask for nothing (None, `output_attentions=False`, which generate passes).
    """
    unused = sorted(name for name, value in kwargs.items()
                    if value is not None and not (name == "output_attentions" and value is False))
    if unused:
        hint = " (this model has no attention weights)" if "output_attentions" in unused else ""
        raise TypeError(f"{type(model).__name__}.forward() got keyword argument(s) it does not use: {unused}{hint}")

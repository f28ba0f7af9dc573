"""Input checks shared by every paperzoo model's `forward` (infrastructure, not model math)."""

from __future__ import annotations

import torch

# Keyword arguments of transformers' loss functions (`model.loss_function`), which Trainer passes to `forward`
LOSS_KWARGS = ("num_items_in_batch", "ignore_index", "shift_labels")


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

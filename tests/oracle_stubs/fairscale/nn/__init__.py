"""`checkpoint_wrapper` and `wrap`, as torchscale's decoders import them.

Activation checkpointing changes memory, not results, and fairscale's `wrap` returns the module unchanged outside an
`enable_wrap` context; both are therefore the identity here.
"""


def checkpoint_wrapper(module, *args, **kwargs):
    return module


def wrap(module, **kwargs):
    return module


__all__ = ["checkpoint_wrapper", "wrap"]

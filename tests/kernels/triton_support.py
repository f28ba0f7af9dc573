"""Where the kernel tests can run Triton: CUDA, or Triton's CPU interpreter (TRITON_INTERPRET=1, set by
tests/conftest.py on machines without a GPU)."""

import importlib
import os

import pytest
import torch

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
HAS_CUDA = torch.cuda.is_available()
DEVICE = "cpu" if INTERPRET else "cuda" if HAS_CUDA else None


def triton_module(name: str):
    """The op's `triton` module, or None when triton is not installed."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def needs_triton(module):
    return pytest.mark.skipif(
        module is None or DEVICE is None,
        reason="Triton kernels need triton and either TRITON_INTERPRET=1 (CPU interpreter) or CUDA",
    )


def poison_outputs(monkeypatch, module) -> list:
    """Make every output the op's Triton module allocates (through its `_empty`) NaN-filled, so a tile the kernel
    never writes shows up; returns the list of allocated shapes (a test asserts it is not empty)."""
    calls = []

    def nan_empty(shape, dtype, device):
        calls.append(tuple(shape))
        return torch.full(shape, float("nan"), dtype=dtype, device=device)

    monkeypatch.setattr(module, "_empty", nan_empty)
    return calls

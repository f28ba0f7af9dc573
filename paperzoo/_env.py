"""The one place that reads paperzoo's environment variables (DESIGN §2: they all start with PAPERZOO_)."""

import os


def kernel_backend() -> str | None:
    """`PAPERZOO_KERNEL_BACKEND`: "auto", "reference" or "triton"; None when unset."""
    value = os.environ.get("PAPERZOO_KERNEL_BACKEND", "").strip()
    return value or None


def triton_interpret() -> bool:
    """Triton's own `TRITON_INTERPRET=1` lets its kernels run on CPU tensors (how CI checks them)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"

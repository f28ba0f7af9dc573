"""Backend resolution for every kernel op (DESIGN §3).

Order: the explicit request (`config.kernel_backend`, passed down as `backend=`), else `PAPERZOO_KERNEL_BACKEND`,
else "auto". Auto picks Triton when Triton imports, the tensors can run it (CUDA, or CPU under TRITON_INTERPRET=1)
and the op supports the call, otherwise the PyTorch reference, and logs the reason once. An explicit request that
cannot be honoured raises: nothing downgrades silently.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from .._env import kernel_backend, triton_interpret

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "reference", "triton")
_logged: set[tuple[str, str]] = set()


def check_backend_name(value: str, field: str = "kernel_backend") -> str:
    if value not in BACKENDS:
        raise ValueError(f"{field}={value!r} is not one of {BACKENDS}")
    return value


def triton_unavailable_reason(*tensors: torch.Tensor) -> str | None:
    """Why Triton cannot run on these tensors, or None if it can."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return "triton is not installed"
    devices = {t.device.type for t in tensors}
    if devices == {"cuda"}:
        return None
    if devices == {"cpu"} and triton_interpret():
        return None
    if devices == {"cpu"}:
        return "tensors are on CPU and TRITON_INTERPRET=1 is not set"
    return f"tensors are on {sorted(devices)}"


def resolve(op: str, requested: str | None, unsupported: Callable[[], str | None]) -> str:
    """Return "reference" or "triton" for `op`. `unsupported()` gives the reason Triton can't take this call."""
    source = "argument"
    if requested is None:
        requested, source = kernel_backend(), "PAPERZOO_KERNEL_BACKEND"
    if requested is None:
        requested, source = "auto", "default"
    check_backend_name(requested, "PAPERZOO_KERNEL_BACKEND" if source == "PAPERZOO_KERNEL_BACKEND" else "kernel_backend")
    if requested == "reference":
        return "reference"
    reason = unsupported()
    if requested == "triton":
        if reason is not None:
            raise RuntimeError(f"{op}: the triton backend was requested ({source}) but cannot run: {reason}")
        return "triton"
    if reason is None:
        return "triton"
    if (op, reason) not in _logged:
        _logged.add((op, reason))
        logger.info("%s: using the PyTorch reference because %s", op, reason)
    return "reference"

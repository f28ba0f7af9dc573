"""Modules used identically by two or more architectures."""

from __future__ import annotations

import torch
from torch import nn


class RMSNorm(nn.Module):
    """x / sqrt(mean(x²) + eps) [· weight], computed in at least fp32 and returned in x's dtype."""

    def __init__(self, dim: int, eps: float = 1e-6, elementwise_affine: bool = True):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim)) if elementwise_affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.to(torch.promote_types(x.dtype, torch.float32))
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        h = h.to(x.dtype)
        return h if self.weight is None else h * self.weight

    def extra_repr(self) -> str:
        return f"eps={self.eps}, affine={self.weight is not None}"


def rotate_every_two(x: torch.Tensor) -> torch.Tensor:
    """(x0, x1, x2, x3, ...) → (−x1, x0, −x3, x2, ...): the rotation by 90° of each interleaved pair."""
    return torch.stack((-x[..., 1::2], x[..., 0::2]), dim=-1).flatten(-2)


def apply_rotary(x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
    """Rotate each interleaved pair (x_2i, x_2i+1) of x [B, T, H, K] by its angle (GPT-J style)."""
    return x * cos + rotate_every_two(x) * sin


class InterleavedRotary(nn.Module):
    """Angles θ_i = base^(−linspace(0, 1, K/2)), each repeated for its (2i, 2i+1) pair: torchscale's RetNetRelPos and
    the official YOCO's rotary (both `linspace`, not the `arange(0, K, 2) / K` of Llama-style rotary)."""

    def __init__(self, key_dim: int, base: float):
        super().__init__()
        self.key_dim, self.base = key_dim, base

    def forward(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        acc = torch.promote_types(dtype, torch.float32)
        inv_freq = 1.0 / self.base ** torch.linspace(0, 1, self.key_dim // 2, device=positions.device, dtype=acc)
        angle = positions.to(acc)[..., None] * inv_freq.repeat_interleave(2)  # [B, T, K]
        return angle.sin()[:, :, None].to(dtype), angle.cos()[:, :, None].to(dtype)  # [B, T, 1, K]


class GLU(nn.Module):
    """down(act(gate(x)) ⊙ up(x)): torchscale's and the official YOCO's FFN (fc1 → gate_proj, gate → up_proj,
    fc2 → down_proj)."""

    def __init__(self, hidden_size: int, intermediate_size: int, act: str = "silu"):
        super().__init__()
        from transformers.activations import ACT2FN

        self.gate_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.up_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=False)
        self.act = ACT2FN[act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))

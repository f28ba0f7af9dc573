"""What the chunked linear-attention Triton kernels share (retention, gated retention): the dot-product options, the
tile sizes and autotuning spaces, and the fused recurrent step for decoding.

The register budgets and caps below were checked offline with ptxas for sm_90 at K = 128, V = 256 (see
retention/README.md). Each op module keeps its own `_empty` name (imported from here) so that its tests can poison the
allocations of that module alone. Importing this module raises ImportError when Triton is missing.
"""

from __future__ import annotations

import torch

try:
    import triton
    import triton.language as tl
except ImportError as exc:  # pragma: no cover - exercised only where triton is absent
    raise ImportError(f"paperzoo.kernels._triton_common needs triton: {exc}") from exc

from .._env import triton_interpret

MIN_C, MAX_C = 16, 64  # tl.dot needs every dimension >= 16; at C = 128 the tiles spill registers (sm_90)
MAX_BVP = 256  # widest V-part of the dq / dk programs; wider V is split into parts whose dq / dk are summed

# Largest tile C per dtype on CUDA for (forward, backward): above them ptxas spills registers at K = 128, V = 256 on
# sm_90 (the backward programs hold a full-V tile, hence its smaller C; fp32 operands take twice the registers).
CUDA_MAX_C = {torch.bfloat16: (64, 32), torch.float16: (64, 32), torch.float32: (32, 16)}


def empty(shape, dtype, device) -> torch.Tensor:
    """The one allocator of kernel outputs (the tests poison it with NaN, per op module)."""
    return torch.empty(shape, dtype=dtype, device=device)


def pow2(n: int, lo: int = 16) -> int:
    return max(lo, triton.next_power_of_2(n))


def check_dtype(op: str, q: torch.Tensor) -> None:
    if q.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise TypeError(f"the {op} triton kernels take fp32, fp16 or bf16; got {q.dtype}")


# --------------------------------------------------------------------------------------------------------------------
# kernels
# --------------------------------------------------------------------------------------------------------------------


@triton.jit
def mixed_dot(a, b, MIX_BF16: tl.constexpr, PREC: tl.constexpr):
    """a @ b for products with an fp32 operand (state, decayed scores): bf16 operands when the inputs are bf16
    (fp32 accumulation), fp32 operands otherwise (tf32/ieee per PREC, fp16 inputs included: no fp16 range limit)."""
    if MIX_BF16:
        out = tl.dot(a.to(tl.bfloat16), b.to(tl.bfloat16))
    else:
        out = tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision=PREC)
    return out


@triton.jit
def chunk_tiles(i_k, i_v, H, K, V, C: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr):
    """Offsets of a chunk's tiles for K-block i_k and V-block i_v of a [B, T, H, ·] tensor: offs_c [C], offs_k [BK],
    offs_v [BV], the masks m_k, m_v, and the in-tile int32 offsets of a [C, BK] q/k tile and a [C, BV] v/o tile
    (consecutive tokens are H·K / H·V elements apart); the caller adds an int64 scalar pointer per chunk."""
    offs_c = tl.arange(0, C)
    offs_k = i_k * BK + tl.arange(0, BK)
    offs_v = i_v * BV + tl.arange(0, BV)
    tile_qk = offs_c[:, None] * (H * K) + offs_k[None, :]
    tile_v = offs_c[:, None] * (H * V) + offs_v[None, :]
    return offs_c, offs_k, offs_v, offs_k < K, offs_v < V, tile_qk, tile_v


@triton.jit
def state_tile(h0, i_bh, offs_k, offs_v, m_k, m_v, K, V, USE: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr):
    """The [BK, BV] tile of a [B·H, K, V] fp32 state (zeros without USE), with its int64 offsets and mask."""
    p_s = i_bh.to(tl.int64) * K * V + (offs_k[:, None] * V + offs_v[None, :])
    m_s = m_k[:, None] & m_v[None, :]
    if USE:
        S = tl.load(h0 + p_s, mask=m_s, other=0.0).to(tl.float32)
    else:
        S = tl.zeros([BK, BV], dtype=tl.float32)
    return S, p_s, m_s


@triton.jit
def recurrent_fwd_kernel(
    q, k, v, log_decay, h0, o, ht,
    T, H, K, V,
    BK: tl.constexpr, BV: tl.constexpr, USE_H0: tl.constexpr, STORE_HT: tl.constexpr, PER_TOKEN: tl.constexpr,
):  # fmt: skip
    """One program per (V-block, b·h): token-by-token S = γ S + kᵀv, o = q S, without tl.dot (any T, K, V).

    log γ is log_decay[h] ([H], retention) or, with PER_TOKEN, log_decay[b, t, h] ([B, T, H], gated retention)."""
    i_v = tl.program_id(0)
    i_bh = tl.program_id(1)
    i_b = i_bh // H
    i_h = i_bh % H
    if not PER_TOKEN:  # (a per-token log_decay may be empty: T = 0)
        gamma = tl.exp2(tl.load(log_decay + i_h).to(tl.float32) * 1.4426950408889634)

    offs_k = tl.arange(0, BK)
    offs_v = i_v * BV + tl.arange(0, BV)
    m_k = offs_k < K
    m_v = offs_v < V
    row = i_b.to(tl.int64) * T * H + i_h  # row of (b, t, h) in [B, T, H], int64; advances by H per token
    S, p_s, m_s = state_tile(h0, i_bh, offs_k, offs_v, m_k, m_v, K, V, USE_H0, BK, BV)
    for _ in range(0, T):
        if PER_TOKEN:
            decay = tl.exp2(tl.load(log_decay + row).to(tl.float32) * 1.4426950408889634)
        else:
            decay = gamma
        b_q = tl.load(q + row * K + offs_k, mask=m_k, other=0.0).to(tl.float32)
        b_k = tl.load(k + row * K + offs_k, mask=m_k, other=0.0).to(tl.float32)
        b_v = tl.load(v + row * V + offs_v, mask=m_v, other=0.0).to(tl.float32)
        S = S * decay + b_k[:, None] * b_v[None, :]
        b_o = tl.sum(S * b_q[:, None], axis=0)
        tl.store(o + row * V + offs_v, b_o.to(o.dtype.element_ty), mask=m_v)
        row += H
    if STORE_HT:
        tl.store(ht + p_s, S, mask=m_s)


def launch_recurrent(q, k, v, log_decay, state, o, ht, per_token: bool) -> None:
    """Run `recurrent_fwd_kernel` into the caller's buffers o [B, T, H, V] and ht [B, H, K, V] fp32 (or None)."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    BK = pow2(K, 1)
    BV = min(pow2(V, 1), max(16, 8192 // BK))
    recurrent_fwd_kernel[(triton.cdiv(V, BV), B * H)](
        q, k, v, log_decay, state, o, ht, T, H, K, V,
        BK=BK, BV=BV, USE_H0=state is not None, STORE_HT=ht is not None, PER_TOKEN=per_token,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------------------------------
# launch configuration
# --------------------------------------------------------------------------------------------------------------------


# Tuning space, checked offline with ptxas for sm_90 at K = 128, V = 256 and the `CUDA_MAX_C` tiles: the
# configurations kept by the pruning spill no registers in bf16 and fp16 (fp32 operands take twice the registers, hence
# the halved state budget; fp32 still spills a little). The num_stages=1 ones need < 70 KB of shared memory: the
# fallback on GPUs with ~100 KB.
def state_budget(kwargs) -> int:
    return 8192 if kwargs.get("MIX_BF16") else 4096


def prune_fwd(configs, named_args, **kwargs):
    bk, cap, budget = kwargs["BK"], pow2(named_args["V"]), state_budget(kwargs)
    kept = [
        c for c in configs
        if c.kwargs["BV"] <= cap and bk * c.kwargs["BV"] <= budget and (c.num_warps == 8 or bk * c.kwargs["BV"] < 4096)
    ]  # fmt: skip
    if any(c.kwargs["BV"] >= 32 for c in kept):  # BV = 16 only where nothing wider fits (K = 256)
        kept = [c for c in kept if c.kwargs["BV"] >= 32]
    return kept or [min(configs, key=lambda c: (c.kwargs["BV"], -c.num_warps))]


def prune_bwd(configs, named_args, **kwargs):
    small = max(kwargs["BKF"] * kwargs["BVB"], kwargs["BKB"] * kwargs["BVP"]) < 4096
    return [c for c in configs if c.num_warps == 8 or small] or configs


def autotune_fwd(kernel):
    """The forward's autotuner: BV and warps / stages, keyed on the shapes and dtypes (first call per key compiles)."""
    return triton.autotune(
        configs=[
            triton.Config({"BV": bv}, num_warps=w, num_stages=s)
            for bv, w, s in ((16, 8, 2), (32, 8, 1), (32, 4, 2), (32, 8, 2), (64, 8, 2), (64, 8, 3), (128, 8, 2))
        ],
        key=["K", "V", "C", "BK", "IN_DT", "PREC"],
        prune_configs_by={"early_config_prune": prune_fwd},
    )(kernel)


def autotune_bwd(kernel):
    """The backward's autotuner: warps / stages only (the blocks come from `bwd_blocks`)."""
    return triton.autotune(
        configs=[triton.Config({}, num_warps=w, num_stages=s) for w, s in ((8, 1), (8, 2), (8, 3), (4, 2))],
        key=["K", "V", "C", "BKF", "BVB", "BKB", "BVP", "IN_DT", "PREC"],
        prune_configs_by={"early_config_prune": prune_bwd},
    )(kernel)


def use_autotune(x: torch.Tensor) -> bool:
    return x.is_cuda and not triton_interpret()


def dot_options(x: torch.Tensor) -> dict:
    """IN_DT: the dtype q/k/v/dO tiles are multiplied in; MIX_BF16, PREC: see `mixed_dot`.

    bf16 inputs multiply state and scores in bf16. fp16 inputs multiply them as tf32 (fp16's 10-bit mantissa, without
    its 65504 range limit). fp32 inputs follow PyTorch's own matmul setting: tf32 where
    torch.backends.cuda.matmul.allow_tf32 is set, else exact fp32 ("ieee", slower: no tensor cores). Under the
    interpreter (CPU tensors) bf16 tiles are upcast to fp32: Triton's interpreter multiplies bf16 dot operands as raw
    uint16 bits.
    """
    if x.dtype == torch.float32:
        return dict(IN_DT=tl.float32, MIX_BF16=False, PREC="tf32" if torch.backends.cuda.matmul.allow_tf32 else "ieee")
    if x.dtype == torch.float16:
        return dict(IN_DT=tl.float16, MIX_BF16=False, PREC="tf32")
    if not x.is_cuda:
        return dict(IN_DT=tl.float32, MIX_BF16=False, PREC="ieee")
    return dict(IN_DT=tl.bfloat16, MIX_BF16=True, PREC="tf32")


def tiles(x: torch.Tensor, chunk_size: int) -> tuple[int, int]:
    """(forward C, backward C): chunk_size clamped to [16, 64] and to the next power of two >= T; on CUDA also to
    the per-dtype caps above. The interpreter (CPU) keeps the requested C so that the tests cover every tile size."""
    C = max(MIN_C, min(int(chunk_size), MAX_C, triton.next_power_of_2(max(x.shape[1], 1))))
    if not x.is_cuda:
        return C, C
    cap_fwd, cap_bwd = CUDA_MAX_C[x.dtype]
    return min(C, cap_fwd), min(C, cap_bwd)


def bwd_blocks(K: int, V: int, mix_bf16: bool) -> tuple[int, int, int, int]:
    """(BKF, BVB, BKB, BVP): all of K with a V-block for dv; a K-block with a V-part (all of V up to 256) for dq and
    dk. Every state tile [BKF, BVB] / [BKB, BVP] within the register budget above (at least 16 wide)."""
    budget = state_budget({"MIX_BF16": mix_bf16})
    BKF = pow2(K)
    parts = triton.cdiv(V, MAX_BVP)
    BVP = pow2(triton.cdiv(V, parts))
    return BKF, min(pow2(V), max(16, budget // BKF)), min(BKF, max(16, budget // BVP)), BVP


# --------------------------------------------------------------------------------------------------------------------
# autograd plumbing
# --------------------------------------------------------------------------------------------------------------------


def bwd_outputs(alloc, q, v, BVP: int, need_dh0: bool):
    """The backward's buffers from `alloc` (the op module's `_empty`, which the tests poison): dq, dk
    [NVP, B, T, H, K] (one slice per V-part of BVP columns; fp32 where there are several, summed by `sum_v_parts`),
    dv [B, T, H, V] and d state [B, H, K, V] fp32 (None unless need_dh0)."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    NVP = triton.cdiv(V, BVP)
    part_dtype = q.dtype if NVP == 1 else torch.float32  # V > 256: dq / dk summed over the V-parts in fp32
    dq = alloc((NVP, B, T, H, K), part_dtype, q.device)
    dk = alloc((NVP, B, T, H, K), part_dtype, q.device)
    dv = alloc((B, T, H, V), v.dtype, q.device)
    return dq, dk, dv, alloc((B, H, K, V), torch.float32, q.device) if need_dh0 else None


def sum_v_parts(dq, dk, dtype):
    """dq, dk [B, T, H, K] in `dtype` from their V-part slices."""
    if dq.shape[0] == 1:
        return dq[0], dk[0]
    return dq.sum(0).to(dtype), dk.sum(0).to(dtype)


def split_outputs(out, output_final_state: bool, state_dtype):
    """(o, final state or None) from the autograd Function's output; the state in the caller's float64 if it was."""
    if not output_final_state:
        return out, None
    o, ht = out
    return o, ht if state_dtype in (None, torch.float32) else ht.to(state_dtype)


def prepare_inputs(op: str, q, k, v, log_decay, state, decay_grad: bool):
    """What every launch takes: q, k, v contiguous in one supported dtype, the decay and the state contiguous fp32.
    The decay keeps its autograd link only when `decay_grad` (gated retention trains it, retention's is a buffer)."""
    check_dtype(op, q)
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    log_decay = (log_decay if decay_grad else log_decay.detach()).to(torch.float32).contiguous()
    if state is not None:
        state = state.to(torch.float32).contiguous()
    return q, k, v, log_decay, state


def recurrent_step(q, k, v, log_decay, state, output_final_state: bool, per_token: bool, alloc):
    """The fused recurrent step over a few tokens (decoding), forward only, on prepared inputs: (o, final state fp32
    or None). The caller's `state` is read, never written; `alloc` is the op module's own `_empty`."""
    B, T, H, K = q.shape
    o = alloc((B, T, H, v.shape[-1]), q.dtype, q.device)
    ht = alloc((B, H, K, v.shape[-1]), torch.float32, q.device) if output_final_state else None
    launch_recurrent(q, k, v, log_decay.detach(), state, o, ht, per_token=per_token)
    return o, ht

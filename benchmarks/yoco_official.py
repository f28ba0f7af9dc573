"""Parity of paperzoo's YOCO (and of the test oracle tests/modeling/yoco_official.py) with the REAL official YOCO
decoder (microsoft/unilm `YOCO/yoco/models/decoder/`), on CPU, through paperzoo's checkpoint converter.

    mkdir -p /tmp/yoco_official
    git --git-dir=<mirror of microsoft/unilm> archive HEAD YOCO | tar -x -C /tmp/yoco_official
    .venv/bin/python benchmarks/yoco_official.py [--official /tmp/yoco_official] [--quick]

Prints a markdown table of max|Δlogits| per case, the stubs used, the machine, the command and the date. Never
imported by the tests; needs no network.

The official modules are imported unchanged from `--official` (DIR/YOCO/yoco/models/decoder or DIR/yoco/models/...;
the `yoco` and `yoco.models` package __init__s, which import fairseq's task and model registries, are not run).
What they import but cannot have on a CPU machine is installed into sys.modules first, as small stubs:
- flash_attn.flash_attn_func: SDPA with flash-attn's documented masks (causal aligned bottom-right, window_size=(left,
  right), GQA: query head h reads K/V head h // (H / H_kv)), in the input dtype;
- fairseq.model_parallel.megatron.mpu: Column/RowParallelLinear = nn.Linear, VocabParallelEmbedding = a weight and
  F.embedding (model_parallel_size 1: same names and shapes); their init_method IS applied to the weight;
  copy_to_model_parallel_region = identity; fairscale.nn.checkpoint_wrapper = identity;
- kernel/swiglu: torch.cuda.jiterator's functions are CPU functions of the same C++ template
  (float(x)·float(y) / (1 + exp(−float(x))), cast back to the input dtype);
- torch.cuda.device(None), which the Triton rotary wrapper enters for CPU tensors, is a null context.
The Triton kernels (rotary, the chunk-state scan of gate_recurrent) run unchanged in Triton's CPU interpreter
(TRITON_INTERPRET=1, set here before triton is imported), and `inner_chunk`'s @torch.compile compiles for CPU
(inductor; --no-compile runs it eagerly: the same function).

Model: dim 128 (self-decoder head dim 64: the Triton scan needs multiples of 64), 4 layers, 2 self heads, 4 cross heads
over 2 K/V heads, FFN 192, vocab 64, batch 2; official init (its init methods), then every RMSNorm weight × (1 ± 0.2),
q/k projections × 4 and the gate projection × 16, so that norms, attention and decays all matter. Self-decoder: gated
retention, or sliding window 5. T = 13 (the official prefill pads gated retention to one 256-token chunk) and T = 300
(two chunks: the Triton scan carries state across them).

Compared (max|Δlogits|): the official full forward (`YOCO(tokens)`, is_prefilling=True) against paperzoo's full
forward and against the test oracle; the official incremental path (prefill of P tokens with incremental_state, then
one token per call with start_pos) against the official full forward and against paperzoo's decoding (prefill with
use_cache=True, then one token per call with the returned cache); for gated retention in fp32 also paperzoo with
kernel_backend="triton" (its Triton kernels in the interpreter; auto picks the PyTorch reference on CPU). Three
precisions:
- fp32: both models in float32 (the official code as shipped; flash-attn itself would need fp16/bf16);
- fp64 (as shipped): both in float64; the official code still rounds to fp32 in RMSNorm (`x.float()`), its rotary
  table (built in fp32) and Triton rotary kernel, `g.float().cumsum` of the gates, the Triton scan's fp32 accumulator
  and the jiterator SwiGLU, so ~1e-6 relative is its floor;
- fp64 (exact): those roundings lifted, nothing else: `Tensor.float()` returns float64 tensors unchanged, the rotary
  tables are precomputed in float64 with the official formula, the rotary and the chunk-state scan are float64
  formula stubs of the Triton kernels' functions. What remains official is the whole model: the projections, the
  chunked gated retention and its prefill/decode state, the caches, the masks, the rotary placement. Agreement here
  to ~1e-12 means paperzoo computes the official function.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import json
import os
import sys
import tempfile
import time
import types
from pathlib import Path

os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported: the official Triton kernels on CPU

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # runnable from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from _machine import machine_description, read_loadavg  # noqa: E402  (benchmarks/ is on sys.path)

DEFAULT_DIR = "/tmp/yoco_official"
VOCAB, BATCH, WINDOW = 64, 2, 5
ARGS = dict(dim=128, n_layers=4, hidden_dim=192, n_self_heads=2, n_attn_heads=4, n_attn_kv_heads=2, vocab_size=VOCAB,
            max_batch_size=BATCH, max_seq_len=1024)
STUBS: list[str] = []  # what stood in for what, printed under the table


# ------------------------------------------------------------------------------------------------------- stubs


def _module(name: str, **attrs) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    sys.modules[name] = module
    return module


class _ParallelLinear(nn.Linear):
    """megatron Column/RowParallelLinear at model_parallel_size 1: a Linear whose weight init_method initialises."""

    def __init__(self, input_size, output_size, bias=True, gather_output=True, input_is_parallel=False,
                 init_method=nn.init.xavier_normal_, stride=1, keep_master_weight_for_test=False):
        super().__init__(input_size, output_size, bias=bias)
        init_method(self.weight)


class _VocabParallelEmbedding(nn.Module):
    """megatron VocabParallelEmbedding at model_parallel_size 1: F.embedding of a weight init_method initialises."""

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, init_method=nn.init.xavier_normal_, **_):
        super().__init__()
        self.padding_idx = padding_idx  # affects gradients only
        self.weight = nn.Parameter(torch.empty(num_embeddings, embedding_dim))
        init_method(self.weight)

    def forward(self, ids):
        return F.embedding(ids, self.weight, self.padding_idx)


def flash_attn_func(q, k, v, dropout_p=0.0, softmax_scale=None, causal=False, window_size=(-1, -1),
                    alibi_slopes=None, deterministic=False, return_attn_probs=False):
    """flash-attn 2's documented function. q [B, Tq, H, D], k/v [B, Tk, Hkv, D] → [B, Tq, H, D]; query i sees key j
    iff i + Tk − Tq − left ≤ j ≤ i + Tk − Tq + right (causal: right = 0; −1: unbounded)."""
    if dropout_p or alibi_slopes is not None or return_attn_probs:
        raise NotImplementedError("flash_attn_func stub: dropout, ALiBi and attention probabilities are not stubbed")
    Tq, Tk = q.shape[1], k.shape[1]
    left, right = window_size
    right = 0 if causal else right
    i = torch.arange(Tq)[:, None] + (Tk - Tq)  # bottom-right alignment
    j = torch.arange(Tk)[None, :]
    visible = torch.ones(Tq, Tk, dtype=torch.bool)
    if left >= 0:
        visible &= j >= i - left
    if right >= 0:
        visible &= j <= i + right
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=visible,
                                         scale=softmax_scale, enable_gqa=k.shape[2] != q.shape[2])
    return out.transpose(1, 2)


def _jiterator_cpu(code: str, **_):
    """torch.cuda.jiterator._create_jit_fn / _create_multi_output_jit_fn for kernel/swiglu.py's two templates."""
    if "swiglu_fwd" in code:
        def swiglu_fwd(x, y):  # T(float(x) * float(y) / (1 + exp(-float(x))))
            xf, yf = x.float(), y.float()
            return (xf * yf / (1.0 + torch.exp(-xf))).to(x.dtype)

        return swiglu_fwd

    def swiglu_bwd(x, y, g):  # the backward template (never called here: no gradients)
        xf, yf, gf = x.float(), y.float(), g.float()
        s = torch.sigmoid(xf)
        return ((s * (1 + xf * (1 - s)) * gf * yf).to(x.dtype), (xf * s * gf).to(x.dtype))

    return swiglu_bwd


@contextlib.contextmanager
def import_stubs():
    """The stubs in sys.modules (and torch.cuda.jiterator patched) while the official modules are imported, removed
    afterwards (the official modules keep their references): transformers must not see a `flash_attn` module."""
    before = set(sys.modules)
    jiterator = torch.cuda.jiterator
    saved = jiterator._create_jit_fn, jiterator._create_multi_output_jit_fn
    install_stubs()
    try:
        yield
    finally:
        jiterator._create_jit_fn, jiterator._create_multi_output_jit_fn = saved
        for name in set(sys.modules) - before:
            if name.split(".")[0] in ("fairseq", "fairscale", "flash_attn"):
                del sys.modules[name]


def install_stubs() -> None:
    _module("fairseq")
    _module("fairseq.model_parallel")
    _module("fairseq.model_parallel.megatron")
    _module("fairseq.model_parallel.megatron.mpu", ColumnParallelLinear=_ParallelLinear,
            RowParallelLinear=_ParallelLinear, VocabParallelEmbedding=_VocabParallelEmbedding,
            copy_to_model_parallel_region=lambda x: x)
    _module("fairscale")
    _module("fairscale.nn", checkpoint_wrapper=lambda module, **_: module)
    _module("flash_attn", flash_attn_func=flash_attn_func)
    jiterator = torch.cuda.jiterator
    jiterator._create_jit_fn = _jiterator_cpu
    jiterator._create_multi_output_jit_fn = lambda code, num_outputs, **kw: _jiterator_cpu(code, **kw)
    cuda_device = torch.cuda.device
    torch.cuda.device = lambda index: contextlib.nullcontext() if index is None else cuda_device(index)
    STUBS.extend([
        "flash_attn.flash_attn_func → SDPA, flash-attn's documented masks (causal bottom-right, window (left, 0), "
        "GQA)",
        "fairseq mpu Column/RowParallelLinear, VocabParallelEmbedding → nn.Linear / F.embedding, same names and "
        "shapes, init_method applied; copy_to_model_parallel_region, fairscale checkpoint_wrapper → identity",
        "torch.cuda.jiterator (kernel/swiglu.py) → CPU functions of its C++ templates (fp32 inside)",
        "torch.cuda.device(None) (entered by kernel/rotary.py for CPU tensors) → null context",
    ])


def find_decoder(path: Path) -> Path | None:
    for root in (path / "YOCO" / "yoco", path / "yoco", path):
        if (root / "models" / "decoder" / "yoco.py").is_file():
            return root
    return None


def load_official(path: Path, compile_inner: bool) -> types.SimpleNamespace:
    """The official decoder modules, imported from the files at `path` with the stubs in place."""
    root = find_decoder(path)
    if root is None:
        sys.exit(f"official code not found at {path}: export it with\n  mkdir -p {path} && git --git-dir=<mirror of "
                 f"microsoft/unilm> archive HEAD YOCO | tar -x -C {path}\n(the `fetch` tool's mirror is a bare git "
                 "directory: <mirror>/repo)")
    for name, sub in (("yoco", root), ("yoco.models", root / "models")):  # skip their __init__ (fairseq registries)
        package = _module(name)
        package.__path__ = [str(sub)]
    if not compile_inner:
        torch._dynamo.config.disable = True  # @torch.compile-decorated functions run eagerly
    names = ("yoco", "gate_retention", "sliding_window_attention", "cross_attention", "rms_norm",
             "kernel.gate_recurrent", "kernel.rotary", "kernel.swiglu")
    with import_stubs():
        mods = {n.replace("kernel.", ""): importlib.import_module(f"yoco.models.decoder.{n}") for n in names}
    STUBS.append(f"official code: {root} (Triton kernels under TRITON_INTERPRET=1; inner_chunk "
                 f"{'torch.compile (inductor, CPU)' if compile_inner else 'eager (--no-compile)'})")
    return types.SimpleNamespace(**mods, root=root)


# ---------------------------------------------------------------------------------- fp64 "exact": fp32 lifted


def _rotary_fp64(x, cos, sin, interleaved=False, inplace=False, seqlen_offsets=0, cu_seqlens=None, max_seqlen=None):
    """kernel/rotary.py's apply_rotary_emb (interleaved, offsets 0, no varlen) in the input dtype."""
    if not interleaved or seqlen_offsets != 0 or cu_seqlens is not None or inplace:
        raise NotImplementedError("rotary stub: interleaved, offset 0, not varlen, not in place")
    x0, x1 = x[..., 0::2], x[..., 1::2]  # [B, T, H, D/2]
    c, s = cos[None, :, None], sin[None, :, None]
    return torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), dim=-1).flatten(-2)


def _scan_fp64(kv, cross_decay, last_kv=None):
    """gate_recurrent's ChunkGateRecurrent forward in the input dtype: out[n] = the state before chunk n,
    state ← state · decay[n] + kv[n]. kv [B, H, N, K, V], cross_decay [B, H, N]."""
    state = torch.zeros_like(kv[:, :, 0]) if last_kv is None else last_kv
    out = []
    for n in range(kv.shape[2]):
        out.append(state)
        state = state * cross_decay[:, :, n, None, None] + kv[:, :, n]
    return torch.stack(out, dim=2)


@contextlib.contextmanager
def exact_float64(off, model):
    """Lift the official code's fp32 roundings for a float64 model (see the module docstring); restore afterwards."""
    float_method = torch.Tensor.float
    saved = {m: m.apply_rotary_emb for m in (off.yoco, off.gate_retention, off.sliding_window_attention,
                                             off.cross_attention)}
    scan = off.gate_recurrent.chunk_gate_recurrent
    a = model.args
    for decoder, head_dim in ((model.self_decoder, a.dim // a.n_self_heads),
                              (model.cross_decoder, a.dim // a.n_attn_heads)):
        angle = 1.0 / (a.rope_theta ** torch.linspace(0, 1, head_dim // 2, dtype=torch.float64))  # official formula
        decoder._precomputed_freqs_cis = torch.arange(a.max_seq_len, dtype=torch.float64)[:, None] * angle
    torch.Tensor.float = lambda self, *args, **kw: self if self.dtype == torch.float64 else float_method(self, *args,
                                                                                                        **kw)
    for m in saved:
        m.apply_rotary_emb = _rotary_fp64
    off.gate_recurrent.chunk_gate_recurrent = _scan_fp64
    try:
        yield
    finally:
        torch.Tensor.float = float_method
        for m, fn in saved.items():
            m.apply_rotary_emb = fn
        off.gate_recurrent.chunk_gate_recurrent = scan
        model.self_decoder._precomputed_freqs_cis = model.cross_decoder._precomputed_freqs_cis = None


# ------------------------------------------------------------------------------------------------ the models


def build_official(off, sliding_window, seed: int):
    args = off.yoco.YOCOArgs(**ARGS, sliding_window=sliding_window)
    torch.manual_seed(seed)
    model = off.yoco.YOCO(args).eval()  # the official init methods, through the stubs
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.mul_(1 + 0.2 * torch.randn(p.shape, generator=gen))
            elif name.endswith(("mixer.q_proj.weight", "mixer.k_proj.weight")):
                p.mul_(4.0)
            elif name.endswith("gt_proj.weight"):
                p.mul_(16.0)
    return model, args


def official_full(model, tokens):
    with torch.no_grad():
        return model(tokens)[0]  # is_prefilling=True, no incremental state: the official training/eval forward


def official_incremental(model, tokens, prefill: int):
    """Prefill `prefill` tokens with an incremental state, then one token per call (the official generation loop)."""
    state, steps = {}, []
    with torch.no_grad():
        steps.append(model(tokens[:, :prefill], start_pos=0, incremental_state=state, is_prefilling=True)[0])
        for t in range(prefill, tokens.shape[1]):
            steps.append(model(tokens[:, t:t + 1], start_pos=t, incremental_state=state, is_prefilling=False)[0])
    return torch.cat(steps, dim=1)


def paperzoo_decode(model, tokens, prefill: int):
    with torch.no_grad():
        out = model(tokens[:, :prefill], use_cache=True)
        steps, cache = [out.logits], out.cache
        for t in range(prefill, tokens.shape[1]):
            out = model(tokens[:, t:t + 1], cache=cache, use_cache=True)
            steps.append(out.logits)
            cache = out.cache
    return torch.cat(steps, dim=1)


def convert(official, args, dtype, tmp: Path, tag: str):
    """The official state_dict and params.json through `convert_official_yoco`, reloaded with from_pretrained
    (kernel_backend auto: the PyTorch reference on CPU), and with kernel_backend="triton" (the Triton interpreter)
    for gated retention in fp32."""
    from paperzoo.convert.official_yoco import convert_official_yoco
    from paperzoo.modeling.yoco import YOCOForCausalLM

    folder = tmp / tag
    folder.mkdir()
    torch.save(official.state_dict(), folder / "checkpoint.pth")
    (folder / "params.json").write_text(json.dumps(dataclasses.asdict(args)))
    convert_official_yoco(folder / "checkpoint.pth", folder / "params.json", folder / "hf")
    ours = YOCOForCausalLM.from_pretrained(folder / "hf", dtype=dtype).eval()
    triton = None
    if dtype == torch.float32 and args.sliding_window is None:  # paperzoo's Triton gated retention (fp32/16 only)
        triton = YOCOForCausalLM.from_pretrained(folder / "hf", dtype=dtype, kernel_backend="triton").eval()
    return ours, triton


def oracle_model(official, args, dtype):
    """The test oracle (tests/modeling/yoco_official.py) loaded strictly with the official state_dict: the two
    share every parameter name."""
    from tests.modeling.yoco_official import YOCO, YOCOArgs

    oracle = YOCO(YOCOArgs(**dataclasses.asdict(args))).to(dtype).eval()
    oracle.load_state_dict(official.state_dict(), strict=True)
    return oracle


# ---------------------------------------------------------------------------------------------------- the run


def run_case(off, kind: str, precision: str, lengths, prefill: dict, tmp: Path) -> list[dict]:
    window = WINDOW if kind == "sliding_window" else None
    dtype = torch.float32 if precision == "fp32" else torch.float64
    official, args = build_official(off, window, seed=0 if window is None else 1)
    official = official.to(dtype)
    ours, ours_triton = convert(official, args, dtype, tmp, f"{kind}-{precision}")
    oracle = oracle_model(official, args, dtype)
    gen = torch.Generator().manual_seed(1234)
    tokens = torch.randint(0, VOCAB, (BATCH, max(*lengths, prefill["T"])), generator=gen)
    lift = exact_float64(off, official) if precision == "fp64-exact" else contextlib.nullcontext()
    rows = []

    def row(what, got, ref):
        rows.append(dict(kind=kind, precision=precision, what=what, diff=(got - ref).abs().max().item(),
                         scale=ref.abs().max().item()))

    with lift:
        for T in lengths:
            ref = official_full(official, tokens[:, :T])
            with torch.no_grad():
                row(f"full T={T}: paperzoo", ours(tokens[:, :T]).logits, ref)
                row(f"full T={T}: test oracle", oracle(tokens[:, :T]), ref)
                if ours_triton is not None:
                    row(f"full T={T}: paperzoo kernel_backend=triton", ours_triton(tokens[:, :T]).logits, ref)
        T, P = prefill["T"], prefill["P"]
        ref = official_full(official, tokens[:, :T])
        inc = official_incremental(official, tokens[:, :T], P)
        row(f"official prefill {P} + decode to {T} vs official full", inc, ref)
        row(f"paperzoo prefill {P} + decode to {T} vs official incremental", paperzoo_decode(ours, tokens[:, :T], P),
            inc)
        if ours_triton is not None:
            row(f"paperzoo kernel_backend=triton prefill {P} + decode to {T} vs official incremental",
                paperzoo_decode(ours_triton, tokens[:, :T], P), inc)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--official", default=DEFAULT_DIR, help=f"exported official code (default {DEFAULT_DIR})")
    parser.add_argument("--quick", action="store_true", help="T = 13 only, fp32 and fp64-exact")
    parser.add_argument("--no-compile", action="store_true", help="run the official inner_chunk eagerly")
    parser.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1),
                        help="torch.set_num_threads (default: the cores, at most 4)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    off = load_official(Path(args.official), compile_inner=not args.no_compile)
    command = " ".join([".venv/bin/python" if ".venv" in sys.executable else Path(sys.executable).name,
                        os.path.relpath(__file__, Path.cwd()) if Path(__file__).is_relative_to(Path.cwd())
                        else __file__, *sys.argv[1:]])
    import triton

    versions = (f"torch {torch.__version__}, triton {triton.__version__} (interpreter), "
                f"{torch.get_num_threads()} threads")
    print("## YOCO: paperzoo vs the official code (CPU)\n")
    print(machine_description(command, versions) + "\n")
    lengths = (13,) if args.quick else (13, 300)
    precisions = ("fp32", "fp64-exact") if args.quick else ("fp32", "fp64", "fp64-exact")
    prefill = {"gated_retention": {"T": 24, "P": 9}, "sliding_window": {"T": 16, "P": 7}}
    rows, t0 = [], time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("gated_retention", "sliding_window"):
            for precision in precisions:
                start = time.perf_counter()
                rows.extend(run_case(off, kind, precision, lengths, prefill[kind], Path(tmp)))
                print(f"[{kind} {precision}] {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    print("| self-decoder | precision | comparison | max abs Δ logits | max abs logits | relative |")
    print("|---|---|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['kind']} | {r['precision']} | {r['what']} | {r['diff']:.2e} | {r['scale']:.2f} | "
              f"{r['diff'] / r['scale']:.1e} |")
    print("\nStubs and notes:\n" + "\n".join(f"- {s}" for s in STUBS))
    print(f"- sliding window {WINDOW}; official incremental prefill pads gated retention to 256 tokens, as its "
          "full forward does")
    print(f"\nWall time {time.perf_counter() - t0:.0f} s; load average at the end: {read_loadavg()}")


if __name__ == "__main__":
    main()

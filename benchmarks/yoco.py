"""YOCO vs Llama on CPU: cache bytes, prefill time and peak memory, decode per token against context; and a short
training run of both on real text.

    .venv/bin/python benchmarks/yoco.py                    # both parts, ~15 min on a quiet machine (`make bench`)
    .venv/bin/python benchmarks/yoco.py --part inference   # only part 1 (contexts 1k-32k, ~7 min)
    .venv/bin/python benchmarks/yoco.py --part train       # only part 2 (400 steps, ~8 min); --lr to change the LR
    .venv/bin/python benchmarks/yoco.py --quick            # smoke run: contexts 1k and 4k, 60 training steps (~2.5 min)

Prints markdown tables and the machine description. fp32, batch 1 (part 1), random weights (part 1), eval, no_grad,
`torch.set_num_threads(2)`; both models have the same width, depth, FFN and vocabulary, untied embeddings:
  * Llama: transformers' `LlamaForCausalLM`, SDPA attention (is_causal, no mask materialised), `DynamicCache`;
    query and K/V heads equal to YOCO's cross-decoder heads.
  * YOCO: paperzoo's `YOCOForCausalLM`, self_decoder="gated_retention", kernel_backend "auto" (the PyTorch reference
    on CPU), L/2 gated-retention layers (head dim 256, as the paper's gRet), one shared K/V, L/2 cross-decoder layers.

1. Inference (hidden 512, 8 layers = YOCO 4 self + 4 cross, 8 query and 8 K/V heads of 64, FFN 1536, vocab 32000):
   * sanity, before any timing: YOCO's prefill logits (`use_cache=True, logits_to_keep=1`) equal its full forward's
     last-position logits (no cache, every position), once unsegmented and once with the prompt cut in segments
     (the path that prompts longer than `prefill_segment_size` = 4096 take);
   * prefill = what `generate` runs: `model(ids, use_cache=True, logits_to_keep=1)`, one forward over the prompt.
     Each (model, context) runs in a FRESH subprocess: build, 128-token warm-up forward, then the peak-RSS watermark
     is reset (`/proc/self/clear_refs` 5: VmHWM := VmRSS) and the timed forward runs; peak = VmHWM − VmRSS before the
     forward, so the model build's own transient peak cannot hide the forward's (ru_maxrss, which keeps the build's
     high-water mark, is printed beside it as the brief's method). The peak includes the cache the forward returns.
     Llama and YOCO subprocesses alternate, in rounds (best time kept);
   * cache bytes after that prefill: the storage bytes of every tensor held by the returned cache's layers (YOCO: the
     gated-retention states, the one shared K/V and the token counters; Llama: every layer's keys and values);
   * decode: in this process, each context is prefilled as above (one forward per model), the caches are copied,
     then one-token steps feed the cache back in, Llama and YOCO steps interleaved (median and min per token).

Timings use 2 threads and no `nice`: on this shared 2-core machine a niced 2-thread run is preempted mid-op, and
YOCO's reference kernel (a Python loop of small ops per 64-token chunk) then waits at every thread barrier (a 4k
YOCO prefill took 5.6-20.9 s niced instead of 0.9 s).
2. Training (--part train): the demo corpus (`paperzoo.demo.corpus()`, Python's pydoc topics, 95% train / 5%
   held out) and its byte-level BPE (`train_tokenizer`, vocab 2048); hidden 256, 4 layers (YOCO 2 + 2, gRet head
   dim 256, cross 4 heads of 64 over 4 K/V heads; Llama 4 heads, 4 K/V heads), FFN 768, sequence 256, batch 16;
   AdamW (lr 2e-3, betas 0.9/0.98, weight decay 0.05), linear warm-up then cosine to 10%, gradient clip 1.0; the
   same seed and the SAME batches for both, their steps interleaved. Training loss (mean of the last 20 steps) and
   held-out loss (every non-overlapping 256-token window of the held-out 5%) at checkpoints, seconds per step.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import logging
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # runnable from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402

from paperzoo import YOCOConfig, YOCOForCausalLM  # noqa: E402

from _machine import machine_description, read_loadavg  # noqa: E402  (benchmarks/ is on sys.path)
from retnet import CpuShare, Retry, fmt_ms, mib, n_params, proc_status_kib  # noqa: E402


class ShortRetry(Retry):
    WAIT_S = 15.0  # the machine is rarely quiet for long: wait at most this long for a quiet second per measurement

VOCAB, HIDDEN, LAYERS, FFN = 32000, 512, 8, 1536
SELF_HEADS, HEADS, KV_HEADS = 2, 8, 8
CONTEXTS, QUICK_CONTEXTS = [1024, 4096, 16384, 32768], [1024, 4096]
PREFILL_MAX_S = 900.0  # a (model, context) whose prefill is estimated above this is skipped
WORKER_TIMEOUT = 1800
PAPER = ("The paper's far anchors (Sun et al. 2024, arXiv 2405.05254, on an H100; NOT measured here): 9.4x less "
         "total inference memory at 1M tokens, 2.87x faster prefill at 32K tokens.")


# --------------------------------------------------------------------------------------------------- models


def yoco_config(**overrides) -> YOCOConfig:
    args = dict(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS, intermediate_size=FFN,
                self_decoder="gated_retention", num_self_heads=SELF_HEADS, num_attention_heads=HEADS,
                num_key_value_heads=KV_HEADS, kernel_backend="auto")
    return YOCOConfig(**{**args, **overrides})


def llama_config(**overrides) -> LlamaConfig:
    args = dict(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                num_key_value_heads=KV_HEADS, intermediate_size=FFN, max_position_embeddings=65536,
                tie_word_embeddings=False, attn_implementation="sdpa")
    return LlamaConfig(**{**args, **overrides})


def build(kind: str, **overrides):
    torch.manual_seed(0)
    if kind == "yoco":
        return YOCOForCausalLM(yoco_config(**overrides)).float().eval()
    return LlamaForCausalLM(llama_config(**overrides)).float().eval()


def cache_bytes(cache) -> dict:
    """Storage bytes of every tensor the cache's layers hold (each storage once), split into K/V, recurrent states
    and the rest (token counters)."""
    seen, split = set(), {"kv": 0, "state": 0, "other": 0}

    def walk(obj, part):
        if isinstance(obj, torch.Tensor):
            storage = obj.untyped_storage()
            if storage.data_ptr() not in seen:
                seen.add(storage.data_ptr())
                split["other" if obj.dim() == 0 else part] += storage.nbytes()
        elif isinstance(obj, dict):
            for value in obj.values():
                walk(value, part)
        elif isinstance(obj, (list, tuple)):
            for value in obj:
                walk(value, part)

    for layer in cache.layers:
        for name, value in vars(layer).items():
            walk(value, "kv" if name in ("keys", "values") else "state" if "states" in name else "other")
    split["total"] = sum(split.values())
    return split


def command_line() -> str:
    return " ".join([".venv/bin/python" if ".venv" in sys.executable else Path(sys.executable).name,
                     os.path.relpath(__file__, Path.cwd()) if Path(__file__).is_relative_to(Path.cwd())
                     else __file__, *sys.argv[1:]])


# --------------------------------------------------------------------------------------------------- sanity


@torch.no_grad()
def sanity() -> dict:
    """YOCO's prefill early exit gives its full forward's last logits; also through the segmented prefill."""
    records = []

    class Capture(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    registry_logger = logging.getLogger("paperzoo.kernels._registry")
    handler, level = Capture(), registry_logger.level
    registry_logger.addHandler(handler)
    registry_logger.setLevel(logging.INFO)
    try:
        model = build("yoco")
        T = 300
        ids = torch.randint(0, VOCAB, (1, T), generator=torch.Generator().manual_seed(3))
        full = model(ids, use_cache=False).logits[:, -1]
        prefill = model(ids, use_cache=True, logits_to_keep=1).logits[:, -1]
        segment = model.config.prefill_segment_size
        model.config.prefill_segment_size = 128  # 300 tokens in segments of 128, 128, 44
        try:
            segmented = model(ids, use_cache=True, logits_to_keep=1).logits[:, -1]
        finally:
            model.config.prefill_segment_size = segment
    finally:
        registry_logger.removeHandler(handler)
        registry_logger.setLevel(level)
    scale = full.abs().max().item()
    result = dict(T=T, scale=scale, prefill=(prefill - full).abs().max().item(),
                  segmented=(segmented - full).abs().max().item(), backend=sorted(set(records)))
    for name in ("prefill", "segmented"):
        if not result[name] <= 1e-4 * max(scale, 1.0):
            raise SystemExit(f"sanity check failed: YOCO {name} logits differ from the full forward's by "
                             f"{result[name]:.3g} (logit scale {scale:.3g})")
    return result


# --------------------------------------------------------------------------------------------------- prefill


def prefill_worker(kind: str, T: int, threads: int) -> None:
    """Runs in a fresh subprocess; prints one JSON line."""
    torch.set_num_threads(threads)
    model = build(kind)
    ids = torch.randint(0, VOCAB, (1, T), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        model(ids[:, :128], use_cache=True, logits_to_keep=1)  # warm-up (thread pool, first-call costs)
    gc.collect()
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak-RSS watermark (VmHWM) to the current RSS
        method = "VmHWM after clear_refs"
    except OSError:
        method = "ru_maxrss"
    base_kib = proc_status_kib("VmRSS") or 0
    with torch.no_grad():
        t0 = time.perf_counter()
        out = model(ids, use_cache=True, logits_to_keep=1)
        seconds = time.perf_counter() - t0
    maxrss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak_kib = (proc_status_kib("VmHWM") or 0) if method.startswith("VmHWM") else maxrss_after
    assert out.logits.shape == (1, 1, VOCAB), out.logits.shape
    length = out.cache.get_seq_length(model.model.kv_layer_idx if kind == "yoco" else 0)
    assert length == T, (length, T)
    print(json.dumps(dict(kind=kind, T=T, seconds=seconds, cache=cache_bytes(out.cache), method=method,
                          peak_bytes=max(0, (peak_kib if method.startswith("VmHWM") else maxrss_after)
                                         - (base_kib if method.startswith("VmHWM") else maxrss_before)) * 1024,
                          maxrss_delta_bytes=max(0, maxrss_after - maxrss_before) * 1024,
                          base_rss_bytes=base_kib * 1024)))


def run_worker(kind: str, T: int, threads: int) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_worker", kind, str(T), "--threads", str(threads)]
    share = CpuShare()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=WORKER_TIMEOUT)
    except subprocess.TimeoutExpired:
        return dict(kind=kind, T=T, skipped=f"timed out after {WORKER_TIMEOUT} s")
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no stderr"]
        return dict(kind=kind, T=T, skipped=f"failed (rc {proc.returncode}: {tail[0]})")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["share"] = share.fraction()
    print(f"  prefill {kind} T={T}: {result['seconds']:.2f} s, peak +{mib(result['peak_bytes'])}, cache "
          f"{mib(result['cache']['total'])}; others' CPU {100 * result['share']:.0f}%", file=sys.stderr, flush=True)
    return result


def estimate(history: list[tuple[int, float]], T: int, kind: str) -> float | None:
    """Prefill seconds at T from the last measured context: quadratic growth for Llama (attention), linear for YOCO."""
    if not history:
        return None
    T0, s0 = history[-1]
    return s0 * (T / T0) ** (2 if kind == "llama" else 1)


def prefill_section(contexts: list[int], rounds: dict, threads: int, retry: Retry) -> dict:
    """{(kind, T): {"runs": [...], ...}}: per context, rounds of Llama and YOCO subprocesses, order alternating."""
    results, history = {}, {"llama": [], "yoco": []}
    for T in contexts:
        kinds = []
        for kind in ("llama", "yoco"):
            guess = estimate(history[kind], T, kind)
            if guess is not None and guess > PREFILL_MAX_S:
                results[(kind, T)] = dict(skipped=f"estimated {guess:.0f} s > {PREFILL_MAX_S:.0f} s")
                print(f"  prefill {kind} T={T}: skipped ({results[(kind, T)]['skipped']})", file=sys.stderr)
            else:
                kinds.append(kind)
                results[(kind, T)] = dict(runs=[])
        for r in range(rounds.get(T, 1)):
            for kind in (kinds if r % 2 == 0 else kinds[::-1]):
                retry.wait_for_quiet()
                run = run_worker(kind, T, threads)
                if "skipped" in run:
                    results[(kind, T)].setdefault("skipped", run["skipped"])
                    continue
                results[(kind, T)]["runs"].append(run)
        for kind in kinds:
            runs = results[(kind, T)]["runs"]
            if runs:
                results[(kind, T)].pop("skipped", None)
                history[kind].append((T, min(run["seconds"] for run in runs)))
    return results


# --------------------------------------------------------------------------------------------------- decode


@torch.no_grad()
def decode_section(contexts: list[int], steps: int, warmup: int, retry: Retry) -> dict:
    models = {"llama": build("llama"), "yoco": build("yoco")}
    ids = torch.randint(0, VOCAB, (1, max(contexts)), generator=torch.Generator().manual_seed(2))
    rows = []
    for L in contexts:
        caches, last = {}, {}
        for name, model in models.items():  # the prefill `generate` runs: one forward over the L-token prompt
            out = model(ids[:, :L], use_cache=True, logits_to_keep=1)
            caches[name], last[name] = out.cache, out.logits
        del out
        sizes = {name: cache_bytes(cache) for name, cache in caches.items()}

        def measure():
            cache = {name: copy.deepcopy(c) for name, c in caches.items()}  # every attempt starts at L tokens
            token = {name: last[name][:, -1:].argmax(-1) for name in models}
            times = {name: [] for name in models}
            share = CpuShare()
            for i in range(warmup + steps):
                order = list(models) if i % 2 == 0 else list(models)[::-1]
                for name in order:  # interleaved, order alternating, so that load hits both alike
                    t0 = time.perf_counter()
                    out = models[name](token[name], cache=cache[name], use_cache=True)
                    dt = time.perf_counter() - t0
                    cache[name], token[name] = out.cache, out.logits[:, -1:].argmax(-1)
                    if i >= warmup:
                        times[name].append(dt)
            share = share.fraction()
            assert cache["llama"].get_seq_length() == L + warmup + steps
            assert cache["yoco"].get_seq_length(models["yoco"].model.kv_layer_idx) == L + warmup + steps
            del cache, out
            gc.collect()
            result = dict(share=share, **{f"{n}_median": statistics.median(t) for n, t in times.items()},
                          **{f"{n}_min": min(t) for n, t in times.items()})
            print(f"  decode context {L}: llama {fmt_ms(result['llama_median'])} ms/token, yoco "
                  f"{fmt_ms(result['yoco_median'])} ms/token (median of {steps}); others' CPU {100 * share:.0f}%",
                  file=sys.stderr, flush=True)
            return result

        rows.append(dict(context=L, sizes=sizes, **retry.run(measure)))
        del caches, last
        gc.collect()
    return dict(rows=rows)


# --------------------------------------------------------------------------------------------------- report


def print_models() -> None:
    llama, yoco = build("llama"), build("yoco")
    lp, yp = (n_params(llama), n_params(llama, embeddings=False)), (n_params(yoco), n_params(yoco, embeddings=False))
    del llama, yoco
    print("| model | layers | hidden | heads x head dim | FFN | params | params w/o embeddings |")
    print("|---|---:|---:|---|---:|---:|---:|")
    print(f"| Llama (transformers `LlamaForCausalLM`, SDPA, DynamicCache) | {LAYERS} | {HIDDEN} | {HEADS} x "
          f"{HIDDEN // HEADS} (q), {KV_HEADS} x {HIDDEN // HEADS} (k, v) | SwiGLU {FFN} | {lp[0] / 1e6:.2f} M "
          f"| {lp[1] / 1e6:.2f} M |")
    print(f"| YOCO (paperzoo `YOCOForCausalLM`, gRet, reference kernels) | {LAYERS // 2} self + {LAYERS // 2} cross "
          f"| {HIDDEN} | self: {SELF_HEADS} x {HIDDEN // SELF_HEADS} (gRet); cross: {HEADS} x {HIDDEN // HEADS} (q) "
          f"over one shared {KV_HEADS} x {HIDDEN // HEADS} (k, v) | SwiGLU {FFN} | {yp[0] / 1e6:.2f} M "
          f"| {yp[1] / 1e6:.2f} M |")
    print(f"\nYOCO has {100 * (yp[0] / lp[0] - 1):+.1f}% parameters ({100 * (yp[1] / lp[1] - 1):+.1f}% without "
          "embeddings). Vocab 32000, untied embeddings, random weights, fp32, batch 1.\n")


def print_sanity(s: dict) -> None:
    print(f"Sanity (before timing): YOCO prefill logits (`use_cache=True, logits_to_keep=1`) vs its full forward's "
          f"last-position logits at T={s['T']}: max|Δ| {s['prefill']:.2e} unsegmented, {s['segmented']:.2e} with "
          f"`prefill_segment_size=128` (logits up to {s['scale']:.2f}). Kernel dispatch: "
          f"{'; '.join(s['backend']) or 'no message (reference requested or PAPERZOO_KERNEL_BACKEND set)'}.\n")


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


def print_inference(pre: dict, dec: dict, contexts: list[int], steps: int, warmup: int) -> None:
    best = {key: min(r["seconds"] for r in v["runs"]) for key, v in pre.items() if v.get("runs")}
    peak = {key: max(r["peak_bytes"] for r in v["runs"]) for key, v in pre.items() if v.get("runs")}
    rss = {key: max(r["maxrss_delta_bytes"] for r in v["runs"]) for key, v in pre.items() if v.get("runs")}
    share = {key: max(r["share"] for r in v["runs"]) for key, v in pre.items() if v.get("runs")}
    sizes = {r["context"]: r["sizes"] for r in dec["rows"]}
    for key, v in pre.items():  # the prefill subprocesses' caches must match the decode caches' bytes
        for r in v.get("runs", []):
            assert r["cache"] == sizes[key[1]][key[0]], (key, r["cache"], sizes[key[1]][key[0]])

    print("### 1. Cache after prefill (fp32, batch 1)\n")
    print("| context | Llama K/V (8 layers) | YOCO shared K/V | YOCO gRet states | YOCO counters | YOCO total "
          "| Llama / YOCO |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for T in contexts:
        ls, ys = sizes[T]["llama"], sizes[T]["yoco"]
        print(f"| {T} | {mib(ls['total'])} | {mib(ys['kv'])} | {mib(ys['state'])} | {ys['other']} B "
              f"| {mib(ys['total'])} | **{ratio(ls['total'], ys['total'])}** |")
    T0 = contexts[0]
    ys = sizes[T0]["yoco"]
    per_token_llama = 2 * LAYERS * KV_HEADS * (HIDDEN // HEADS) * 4
    per_token_yoco = 2 * KV_HEADS * (HIDDEN // HEADS) * 4
    print(f"\nLlama holds 2 x {LAYERS} layers x {KV_HEADS} heads x {HIDDEN // HEADS} x 4 B = {per_token_llama:,} B per "
          f"token; YOCO holds the one shared K/V, {per_token_yoco:,} B per token ({LAYERS}x less), plus "
          f"{LAYERS // 2} fixed gRet states [1, {SELF_HEADS}, {HIDDEN // SELF_HEADS}, {HIDDEN // SELF_HEADS}] fp32 "
          f"= {mib(ys['state'])} whatever the context; so Llama / YOCO rises towards {LAYERS}x with the context "
          f"(the paper's L/2-per-cross-layer saving is the {LAYERS // 2} cross layers sharing one K/V; the other "
          f"{LAYERS // 2} layers keep O(1) states). Counters: one int64 token count per gRet layer.\n")

    print("### 2. Prefill: `model(ids, use_cache=True, logits_to_keep=1)`, one forward (fresh subprocess per run)\n")
    print("| context | Llama s | YOCO s | Llama / YOCO time | Llama peak | YOCO peak | Llama / YOCO peak "
          "| ru_maxrss Δ Llama / YOCO | runs | max others' CPU |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for T in contexts:
        lk, yk = ("llama", T), ("yoco", T)
        if lk not in best or yk not in best:
            why = "; ".join(f"{k[0]}: {pre[k].get('skipped', 'no result')}" for k in (lk, yk) if k not in best)
            cells = [f"{best[k]:.2f}" if k in best else "skipped" for k in (lk, yk)]
            print(f"| {T} | {cells[0]} | {cells[1]} | — | {mib(peak[lk]) if lk in peak else '—'} "
                  f"| {mib(peak[yk]) if yk in peak else '—'} | — | — | — | ({why}) |")
            continue
        runs = f"{len(pre[lk]['runs'])} / {len(pre[yk]['runs'])}"
        print(f"| {T} | {best[lk]:.2f} | {best[yk]:.2f} | **{ratio(best[lk], best[yk])}** | {mib(peak[lk])} "
              f"| {mib(peak[yk])} | **{ratio(peak[lk], peak[yk])}** | {mib(rss[lk])} / {mib(rss[yk])} | {runs} "
              f"| {100 * max(share[lk], share[yk]):.0f}% |")
    methods = sorted({r["method"] for v in pre.values() for r in v.get("runs", [])})
    base = sorted({round(r["base_rss_bytes"] / 2**20) for v in pre.values() for r in v.get("runs", [])})
    print("\nTime: best of the runs (each run its own subprocess; Llama and YOCO alternate). Peak: "
          f"{', '.join(methods)}"
          f" (largest of the runs), i.e. resident memory above the resident size just before the forward (model, "
          f"input and a 128-token warm-up already resident: {base[0]}-{base[-1]} MiB), the returned cache included. "
          "ru_maxrss Δ: ru_maxrss after minus before the forward; it is 0 where the forward's peak stays under the "
          "process's earlier high-water mark (model build, imports), which is why it is not the main column.\n")

    print(f"### 3. Decode after prefill (ms per token, median of {steps} one-token steps after {warmup} warm-up, "
          "Llama and YOCO steps interleaved; min in brackets)\n")
    print("| context | Llama ms/token | YOCO ms/token | Llama / YOCO | others' CPU (attempts) |")
    print("|---:|---:|---:|---:|---:|")
    for r in dec["rows"]:
        print(f"| {r['context']} | {fmt_ms(r['llama_median'])} ({fmt_ms(r['llama_min'])}) "
              f"| {fmt_ms(r['yoco_median'])} ({fmt_ms(r['yoco_min'])}) "
              f"| **{ratio(r['llama_median'], r['yoco_median'])}** | {100 * r['share']:.0f}% ({r['attempts']}) |")
    print()

    print("### Aims (this run)\n")
    aims_at = [T for T in contexts if T >= 16384] or [contexts[-1]]
    for T in aims_at:
        ls, ys = sizes[T]["llama"]["total"], sizes[T]["yoco"]["total"]
        print(f"- cache at {T}: Llama / YOCO {ratio(ls, ys)} (aim >= {LAYERS // 2}x): "
              f"{'met' if ls >= LAYERS // 2 * ys else 'NOT met'}")
    T = 16384 if 16384 in contexts else contexts[-1]
    lk, yk = ("llama", T), ("yoco", T)
    if lk in best and yk in best:
        print(f"- prefill time at {T}: Llama / YOCO {ratio(best[lk], best[yk])} (aim >= 2x): "
              f"{'met' if best[lk] >= 2 * best[yk] else 'NOT met'}")
    row = next(r for r in dec["rows"] if r["context"] == T)
    print(f"- decode at {T}: YOCO {fmt_ms(row['yoco_median'])} vs Llama {fmt_ms(row['llama_median'])} ms/token "
          f"(aim YOCO <= Llama): {'met' if row['yoco_median'] <= row['llama_median'] else 'NOT met'}")
    print(f"\n{PAPER}\n")


# --------------------------------------------------------------------------------------------------- training

TRAIN = dict(hidden=256, layers=4, ffn=768, heads=4, self_heads=1, seq=256, batch=16, lr=2e-3, warmup=30)


def train_models(vocab: int, eos: int) -> dict:
    h, n, f = TRAIN["hidden"], TRAIN["layers"], TRAIN["ffn"]
    common = dict(vocab_size=vocab, bos_token_id=eos, eos_token_id=eos, pad_token_id=eos)
    torch.manual_seed(0)
    llama = LlamaForCausalLM(llama_config(hidden_size=h, num_hidden_layers=n, intermediate_size=f,
                                          num_attention_heads=TRAIN["heads"], num_key_value_heads=TRAIN["heads"],
                                          max_position_embeddings=TRAIN["seq"], **common))
    torch.manual_seed(0)
    yoco = YOCOForCausalLM(yoco_config(hidden_size=h, num_hidden_layers=n, intermediate_size=f,
                                       num_self_heads=TRAIN["self_heads"], num_attention_heads=TRAIN["heads"],
                                       num_key_value_heads=TRAIN["heads"], **common))
    return {"llama": llama.float(), "yoco": yoco.float()}


@torch.no_grad()
def held_out(model, windows: torch.Tensor) -> float:
    model.eval()
    total = 0.0
    for chunk in windows.split(8):
        total += model(chunk, labels=chunk).loss.item() * len(chunk)
    model.train()
    return total / len(windows)


def lr_at(step: int, total: int) -> float:
    """Multiplier of the base LR: linear warm-up, then cosine from 1 to 0.1."""
    if step < TRAIN["warmup"]:
        return (step + 1) / TRAIN["warmup"]
    progress = (step - TRAIN["warmup"]) / max(1, total - TRAIN["warmup"])
    return 0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, progress)))


def train_section(steps: int, checkpoints: list[int]) -> dict:
    from paperzoo.demo import corpus, train_tokenizer

    t0 = time.perf_counter()
    text = corpus()
    tokenizer = train_tokenizer(text)
    ids = torch.tensor(tokenizer(text).input_ids)
    split = int(0.95 * len(ids))
    train_ids, eval_ids = ids[:split], ids[split:]
    seq, batch = TRAIN["seq"], TRAIN["batch"]
    windows = eval_ids[: (len(eval_ids) // seq) * seq].view(-1, seq)
    models = train_models(len(tokenizer), tokenizer.eos_token_id)
    print(f"  [train] corpus {len(text):,} characters -> {len(ids):,} tokens; {len(windows)} held-out windows; "
          f"setup {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    optimizers = {name: torch.optim.AdamW(m.parameters(), lr=TRAIN["lr"], betas=(0.9, 0.98), weight_decay=0.05)
                  for name, m in models.items()}
    schedulers = {name: torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_at(s, steps))
                  for name, opt in optimizers.items()}
    generator = torch.Generator().manual_seed(0)
    losses = {name: [] for name in models}
    times = {name: [] for name in models}
    table = [dict(step=0, **{f"{n}_eval": held_out(m, windows) for n, m in models.items()})]
    share = CpuShare()
    for m in models.values():
        m.train()
    for step in range(1, steps + 1):
        starts = torch.randint(0, len(train_ids) - seq - 1, (batch,), generator=generator).tolist()
        data = torch.stack([train_ids[s : s + seq] for s in starts])  # the same batch for both models
        for name in (list(models) if step % 2 else list(models)[::-1]):
            tic = time.perf_counter()
            loss = models[name](data, labels=data).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(models[name].parameters(), 1.0)
            optimizers[name].step()
            optimizers[name].zero_grad(set_to_none=True)
            schedulers[name].step()
            times[name].append(time.perf_counter() - tic)
            losses[name].append(loss.item())
        if step in checkpoints:
            row = dict(step=step)
            for name, m in models.items():
                row[f"{name}_train"] = statistics.mean(losses[name][-20:])
                row[f"{name}_eval"] = held_out(m, windows)
            table.append(row)
            print(f"  [train] step {step}: " + ", ".join(
                f"{n} train {row[f'{n}_train']:.3f} held-out {row[f'{n}_eval']:.3f} "
                f"({statistics.median(times[n]):.2f} s/step)" for n in models) + f"; others' CPU {share.others()}",
                file=sys.stderr, flush=True)
    return dict(table=table, times=times, tokens=len(ids), train_tokens=len(train_ids), windows=len(windows),
                vocab=len(tokenizer), chars=len(text), share=share.fraction(),
                params={n: (n_params(m), n_params(m, embeddings=False)) for n, m in models.items()})


def print_train(result: dict, steps: int, machine: str | None) -> None:
    h, n = TRAIN["hidden"], TRAIN["layers"]
    p = result["params"]
    print("## YOCO vs Llama: short training run on the demo corpus (CPU, fp32)\n")
    if machine:
        print(machine + "\n")
    print(f"Corpus: `paperzoo.demo.corpus()` (Python's pydoc topics), {result['chars']:,} characters -> "
          f"{result['tokens']:,} tokens with `train_tokenizer` (byte-level BPE, vocab {result['vocab']}); first 95% "
          f"for training ({result['train_tokens']:,} tokens), held-out loss over all {result['windows']} "
          f"non-overlapping {TRAIN['seq']}-token windows of the last 5%.\n")
    print(f"Models: hidden {h}, {n} layers, FFN {TRAIN['ffn']}, untied embeddings. Llama: {TRAIN['heads']} heads "
          f"(= K/V heads) of {h // TRAIN['heads']}, {p['llama'][0] / 1e6:.2f} M params "
          f"({p['llama'][1] / 1e6:.2f} M w/o embeddings). YOCO: {n // 2} gRet layers ({TRAIN['self_heads']} head of "
          f"{h // TRAIN['self_heads']}) + {n // 2} cross layers ({TRAIN['heads']} heads over one shared "
          f"{TRAIN['heads']}-head K/V), {p['yoco'][0] / 1e6:.2f} M params ({p['yoco'][1] / 1e6:.2f} M w/o "
          f"embeddings). Each built after `torch.manual_seed(0)` with its own init.\n")
    print(f"Training: {steps} steps of batch {TRAIN['batch']} x {TRAIN['seq']} tokens, the same batches for both "
          f"(one generator, seed 0), steps interleaved; AdamW lr {TRAIN['lr']}, betas (0.9, 0.98), weight decay "
          f"0.05, {TRAIN['warmup']} warm-up steps then cosine to 10%, gradient norm clipped at 1.0.\n")
    print("| step | Llama train loss | YOCO train loss | Llama held-out | YOCO held-out | YOCO − Llama held-out |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in result["table"]:
        tr = (f"{r['llama_train']:.3f} | {r['yoco_train']:.3f}" if "llama_train" in r else "— | —")
        print(f"| {r['step']} | {tr} | {r['llama_eval']:.3f} | {r['yoco_eval']:.3f} "
              f"| {r['yoco_eval'] - r['llama_eval']:+.3f} |")
    t = result["times"]
    epochs = steps * TRAIN["batch"] * TRAIN["seq"] / result["train_tokens"]
    best = {n: min((r[f"{n}_eval"], r["step"]) for r in result["table"]) for n in ("llama", "yoco")}
    print(f"\nLowest held-out loss at a checkpoint: Llama {best['llama'][0]:.3f} (step {best['llama'][1]}), YOCO "
          f"{best['yoco'][0]:.3f} (step {best['yoco'][1]}). {steps} steps x {TRAIN['batch'] * TRAIN['seq']:,} tokens "
          f"= {epochs:.1f} passes over the {result['train_tokens']:,} training tokens (random windows).")
    med = {name: statistics.median(t[name]) for name in ("llama", "yoco")}
    print(f"Train loss: mean of the 20 steps before the checkpoint. Seconds per step (forward, backward, clip, "
          f"AdamW; median over all steps): Llama {med['llama']:.3f}, YOCO {med['yoco']:.3f} (Llama / YOCO "
          f"{ratio(med['llama'], med['yoco'])}); other processes used {100 * result['share']:.0f}% of the CPU during "
          "the run.\n")


# --------------------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("all", "inference", "train"), default="all")
    parser.add_argument("--quick", action="store_true", help="contexts 1k and 4k, 60 training steps")
    parser.add_argument("--contexts", type=int, nargs="+", default=None, help="override the contexts")
    parser.add_argument("--steps", type=int, default=16, help="timed decode steps per context (default 16)")
    parser.add_argument("--train-steps", type=int, default=None, help="training steps (default 400, quick 60)")
    parser.add_argument("--lr", type=float, default=TRAIN["lr"], help=f"training peak LR (default {TRAIN['lr']})")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--retries", type=int, default=1,
                        help="re-measure a decode row up to this many times while other processes use >15%% of the CPU")
    parser.add_argument("--_worker", nargs=2, metavar=("KIND", "T"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._worker:
        prefill_worker(args._worker[0], int(args._worker[1]), args.threads)
        return

    torch.set_num_threads(args.threads)
    TRAIN["lr"] = args.lr
    contexts = args.contexts or (QUICK_CONTEXTS if args.quick else CONTEXTS)
    train_steps = args.train_steps or (60 if args.quick else 400)
    t_start, run_share = time.perf_counter(), CpuShare()
    software = f"torch {torch.__version__} ({args.threads} threads), transformers {transformers.__version__}"
    machine = machine_description(command_line(), software)  # at the start: date and load average before the run
    wall = {}
    if args.part in ("all", "inference"):
        retry = ShortRetry(args.retries, budget_s=120 if args.quick else 600)
        print("## YOCO vs Llama: cache, prefill and decode against context (CPU, fp32)\n")
        print(machine + "\n")
        print_models()
        t0 = time.perf_counter()
        s = sanity()
        print_sanity(s)
        print(f"[prefill] contexts {contexts}", file=sys.stderr, flush=True)
        rounds = {T: (3 if T <= 16384 else 2) for T in contexts}
        pre = prefill_section(contexts, rounds, args.threads, retry)
        wall["prefill"] = time.perf_counter() - t0
        print(f"[decode] contexts {contexts}, {args.steps} steps", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        dec = decode_section(contexts, args.steps, 2, retry)
        wall["decode"] = time.perf_counter() - t0
        print_inference(pre, dec, contexts, args.steps, 2)
    if args.part in ("all", "train"):
        checkpoints = sorted({s for s in (25, 50, 100, 200, 300, 400, 600, 800) if s < train_steps} | {train_steps})
        t0 = time.perf_counter()
        result = train_section(train_steps, checkpoints)
        wall["training"] = time.perf_counter() - t0
        print_train(result, train_steps, machine if args.part == "train" else None)
    print("Wall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in wall.items())
          + f", total {time.perf_counter() - t_start:.0f} s; other processes used {run_share.others()} of the CPU "
          f"during the run; load average at end: {read_loadavg()}")


if __name__ == "__main__":
    main()

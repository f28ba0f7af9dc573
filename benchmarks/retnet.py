"""RetNet vs Llama on CPU: decode cost and cache size against context, and RetNet's parallel vs chunkwise prefill.

    .venv/bin/python benchmarks/retnet.py            # full run (contexts to 16k, prefill to 8k; ~10-15 min)
    .venv/bin/python benchmarks/retnet.py --quick    # smoke run (contexts and prefill to 2k; ~1-3 min)

Prints markdown tables and the machine description. Both models are built from random weights at the same width and
depth (hidden 512, 8 layers, intermediate 1376, vocab 32000), fp32, eval, no_grad, `torch.set_num_threads(2)`:
  * Llama: transformers' LlamaForCausalLM, 8 heads of 64, no GQA, SDPA attention, DynamicCache.
  * RetNet: paperzoo's RetNetForCausalLM, 4 heads (key dim 128 per head), value_size 512, PyTorch reference kernels
    (the Triton path is for GPUs; on CPU it would only run under the Triton interpreter).

1. Decode: each context is prefilled honestly (real forward passes with the cache, fed in chunks of 2048 tokens and
   extended incrementally from one context to the next), the cache is copied, then `--steps` single-token forward
   steps feed the cache back in (`cache=out.cache`, greedy next token). Llama and RetNet steps are interleaved one
   by one so that load from other processes hits both alike; the table gives the median (and min) per token.
2. Cache bytes at each context: Llama keys + values over layers; RetNet every tensor in
   `cache.layers[i].recurrent_states` (the retention state, plus layer 0's int64 position counter).
3. RetNet prefill at the model level (batch 1, `use_cache=True`, `logits_to_keep=1`), each measurement in a fresh
   subprocess: time, and peak resident memory above the resident size just before the forward (the peak is reset
   through /proc/self/clear_refs, so the model build does not count; ru_maxrss is the fallback). The form is forced
   through `chunk_size`: T <= chunk_size runs the parallel form, otherwise the chunkwise form with that chunk.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
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

from paperzoo import RetNetConfig, RetNetForCausalLM  # noqa: E402

from _machine import machine_description, read_loadavg  # noqa: E402  (benchmarks/ is on sys.path)

VOCAB, HIDDEN, LAYERS, INTERMEDIATE = 32000, 512, 8, 1376
LLAMA_HEADS, RETNET_HEADS, RETNET_VALUE = 8, 4, 512
PREFILL_FEED = 2048  # tokens per forward when building decode caches
PARALLEL_MAX_SECONDS, PARALLEL_MAX_BYTES = 60.0, 16 * 2**30
WORKER_TIMEOUT = 600


# --------------------------------------------------------------------------------------------------- models


def retnet_config(chunk_size: int = 64) -> RetNetConfig:
    return RetNetConfig(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS,
                        num_attention_heads=RETNET_HEADS, intermediate_size=INTERMEDIATE, value_size=RETNET_VALUE,
                        chunk_size=chunk_size, kernel_backend="reference")


def llama_config() -> LlamaConfig:
    return LlamaConfig(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS,
                       num_attention_heads=LLAMA_HEADS, num_key_value_heads=LLAMA_HEADS,
                       intermediate_size=INTERMEDIATE, max_position_embeddings=32768, tie_word_embeddings=False)


def build(kind: str, chunk_size: int = 64):
    torch.manual_seed(0)
    model = RetNetForCausalLM(retnet_config(chunk_size)) if kind == "retnet" else LlamaForCausalLM(llama_config())
    return model.float().eval()


def n_params(model, embeddings: bool = True) -> int:
    total = sum(p.numel() for p in model.parameters())
    if not embeddings:
        total -= model.get_input_embeddings().weight.numel() + model.get_output_embeddings().weight.numel()
    return total


# --------------------------------------------------------------------------------------------------- helpers


class CpuShare:
    """Share of the machine's CPU time used by *other* processes between two snapshots (/proc/stat busy time minus
    this process's and its waited-for children's CPU time): how contended a measurement was."""

    def __init__(self):
        self.t, self.busy, self.own = self._read()

    @staticmethod
    def _read():
        try:
            vals = [int(v) for v in open("/proc/stat").readline().split()[1:9]]
            busy = (sum(vals) - vals[3] - vals[4]) / os.sysconf("SC_CLK_TCK")  # minus idle and iowait
        except (OSError, ValueError):
            busy = float("nan")
        own = sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
                  for f in ("ru_utime", "ru_stime"))
        return time.perf_counter(), busy, own

    def fraction(self) -> float:
        t, busy, own = self._read()
        share = ((busy - self.busy) - (own - self.own)) / ((t - self.t) * (os.cpu_count() or 1))
        return min(max(share, 0.0), 1.0) if share == share else 0.0  # nan (no /proc/stat): treat as quiet

    def others(self) -> str:
        return f"{100 * self.fraction():.0f}%"


class Retry:
    """The machine is shared: before each measurement wait (sleeping, up to `WAIT_S`) for a second in which other
    processes use less than `QUIET` of the CPU, and re-measure while they took more than that during the measurement;
    keep the least contended attempt. Both stop once the run's wall-clock budget is spent. The tables say how many
    attempts each row took and how contended the kept one was."""

    QUIET, WAIT_S = 0.15, 30.0

    def __init__(self, retries: int, budget_s: float):
        self.retries, self.deadline = retries, time.perf_counter() + budget_s

    def wait_for_quiet(self) -> None:
        until = min(self.deadline, time.perf_counter() + self.WAIT_S)
        while time.perf_counter() < until:
            probe = CpuShare()
            time.sleep(1.0)
            if probe.fraction() <= self.QUIET:
                return

    def run(self, measure):
        """measure() -> result dict with "share" (float); returns the best result with "attempts" set."""
        best, attempts = None, 0
        while True:
            self.wait_for_quiet()
            result = measure()
            attempts += 1
            if best is None or result.get("share", 1.0) < best.get("share", 1.0):
                best = result
            if (best.get("share", 0.0) <= self.QUIET or attempts > self.retries
                    or time.perf_counter() > self.deadline or "skipped" in result):
                best["attempts"] = attempts
                return best


def proc_status_kib(key: str) -> int | None:
    try:
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak_rss(fallback: str) -> str:
    """Reset the peak-RSS watermark (VmHWM) to the current RSS; returns how the peak will be read (`fallback` where
    /proc/self/clear_refs is not writable)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return "VmHWM after clear_refs"
    except OSError:
        return fallback


def mib(n_bytes: float) -> str:
    return f"{n_bytes / 2**20:,.2f} MiB"


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f}"


def llama_cache_bytes(cache) -> int:
    return sum(layer.keys.nbytes + layer.values.nbytes for layer in cache.layers)


def retnet_cache_bytes(cache) -> tuple[int, int]:
    """(all recurrent-state tensors, retention states only)."""
    total = retention = 0
    for layer in cache.layers:
        for slot, tensor in layer.recurrent_states.items():
            if tensor is not None:
                total += tensor.nbytes
                retention += tensor.nbytes if slot == 0 else 0
    return total, retention


def retnet_position(cache) -> int:
    return int(cache.layers[0].recurrent_states[1][0])


# --------------------------------------------------------------------------------------------------- 1 + 2: decode


@torch.no_grad()
def decode_section(contexts: list[int], steps: int, warmup: int, retry: Retry) -> dict:
    llama, retnet = build("llama"), build("retnet")
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, VOCAB, (1, max(contexts)), generator=g)
    caches = {"llama": None, "retnet": None}
    last_logits = {}
    models = {"llama": llama, "retnet": retnet}
    done, rows = 0, []
    for L in contexts:
        prefill_s = {"llama": 0.0, "retnet": 0.0}
        for start in range(done, L, PREFILL_FEED):  # extend both caches honestly from `done` to L tokens
            chunk = ids[:, start : min(L, start + PREFILL_FEED)]
            for name, model in models.items():
                t0 = time.perf_counter()
                out = model(chunk, cache=caches[name], use_cache=True, logits_to_keep=1)
                prefill_s[name] += time.perf_counter() - t0
                caches[name], last_logits[name] = out.cache, out.logits
        done = L
        assert caches["llama"].get_seq_length() == L, caches["llama"].get_seq_length()
        assert retnet_position(caches["retnet"]) == L, retnet_position(caches["retnet"])
        state_shape = tuple(caches["retnet"].layers[0].recurrent_states[0].shape)
        llama_bytes = llama_cache_bytes(caches["llama"])
        retnet_bytes, retention_bytes = retnet_cache_bytes(caches["retnet"])

        def measure():
            # decode from copies, so that the next context (or attempt) starts from exactly L tokens
            cache = {name: copy.deepcopy(c) for name, c in caches.items()}
            token = {name: last_logits[name][:, -1:].argmax(-1) for name in models}
            times = {"llama": [], "retnet": []}
            share = CpuShare()
            for i in range(warmup + steps):
                for name, model in models.items():  # interleaved: Llama step, RetNet step, Llama step, ...
                    t0 = time.perf_counter()
                    out = model(token[name], cache=cache[name], use_cache=True)
                    dt = time.perf_counter() - t0
                    cache[name], token[name] = out.cache, out.logits[:, -1:].argmax(-1)
                    if i >= warmup:
                        times[name].append(dt)
            assert cache["llama"].get_seq_length() == L + warmup + steps
            assert retnet_position(cache["retnet"]) == L + warmup + steps
            share = share.fraction()
            del cache, out
            gc.collect()
            result = dict(share=share, **{f"{n}_median": statistics.median(t) for n, t in times.items()},
                          **{f"{n}_min": min(t) for n, t in times.items()})
            print(f"  context {L}: llama {fmt_ms(result['llama_median'])} ms/token, retnet "
                  f"{fmt_ms(result['retnet_median'])} ms/token (median of {steps}); others' CPU {100 * share:.0f}%",
                  file=sys.stderr, flush=True)
            return result

        row = dict(context=L, llama_bytes=llama_bytes, retnet_bytes=retnet_bytes, retention_bytes=retention_bytes,
                   state_shape=state_shape,
                   prefill_s=prefill_s, **retry.run(measure))
        rows.append(row)
    return dict(rows=rows, params={n: (n_params(m), n_params(m, embeddings=False)) for n, m in models.items()},
                attn=llama.config._attn_implementation)


def print_decode(result: dict, steps: int, warmup: int) -> None:
    rows = result["rows"]
    print(f"### 1. Decode cost per token (batch 1; median of {steps} steps after {warmup} warm-up, "
          "Llama and RetNet steps interleaved)\n")
    print("| context | Llama ms/token | RetNet ms/token | Llama / RetNet | Llama min | RetNet min "
          "| others' CPU share (attempts) |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['context']} | {fmt_ms(r['llama_median'])} | {fmt_ms(r['retnet_median'])} "
              f"| {r['llama_median'] / r['retnet_median']:.2f}x | {fmt_ms(r['llama_min'])} | {fmt_ms(r['retnet_min'])} "
              f"| {100 * r['share']:.0f}% ({r['attempts']}) |")
    first, last = rows[0], rows[-1]
    print(f"\nGrowth from context {first['context']} to {last['context']}: Llama "
          f"{last['llama_median'] / first['llama_median']:.2f}x, RetNet "
          f"{last['retnet_median'] / first['retnet_median']:.2f}x (medians).\n")

    print("### 2. Cache size at each context (fp32, batch 1)\n")
    print("| context | Llama KV cache | RetNet state | RetNet / Llama | Llama / RetNet |")
    print("|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['context']} | {mib(r['llama_bytes'])} ({r['llama_bytes']:,} B) "
              f"| {mib(r['retnet_bytes'])} ({r['retnet_bytes']:,} B) | {r['retnet_bytes'] / r['llama_bytes']:.4f} "
              f"| {r['llama_bytes'] / r['retnet_bytes']:.1f}x |")
    r0 = rows[0]
    B, H, K, Vs = r0["state_shape"]
    v_head = RETNET_VALUE // RETNET_HEADS
    print(f"\nRetNet state = {LAYERS} layers x [B, H, K, V'] = {list(r0['state_shape'])} x 4 B, V' = value head dim "
          f"{v_head} + {Vs - v_head} column(s) carrying the row normaliser (a ones column"
          f"{', zero-padded' if Vs - v_head > 1 else ''}) = {r0['retention_bytes']:,} B, plus "
          f"{r0['retnet_bytes'] - r0['retention_bytes']} B of position counter; it does not depend on the context. "
          f"Llama's cache is 2 x {LAYERS} layers x context x {HIDDEN} x 4 B = {2 * LAYERS * HIDDEN * 4:,} B per "
          "token, so the ratio falls as 1/context (equal sizes at ~"
          f"{r0['retnet_bytes'] / (2 * LAYERS * HIDDEN * 4):.0f} tokens).\n")


# --------------------------------------------------------------------------------------------------- 3: prefill


def prefill_worker(T: int, chunk_size: int, repeats: int, threads: int) -> None:
    """Runs in a fresh subprocess; prints one JSON line."""
    torch.set_num_threads(threads)
    model = build("retnet", chunk_size)
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(0, VOCAB, (1, T), generator=g)
    with torch.no_grad():
        model(ids[:, :128], use_cache=True, logits_to_keep=1)  # warm-up (thread pool, first-call costs)
    gc.collect()
    method = reset_peak_rss("ru_maxrss (includes the model build)")
    base_kib = proc_status_kib("VmRSS") or 0
    times = []
    with torch.no_grad():
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = model(ids, use_cache=True, logits_to_keep=1)
            times.append(time.perf_counter() - t0)
            del out
    if method.startswith("VmHWM"):
        peak_kib = proc_status_kib("VmHWM") or 0
    else:
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps(dict(T=T, chunk_size=chunk_size, form="parallel" if T <= chunk_size else "chunkwise",
                          times=times, peak_bytes=max(0, peak_kib - base_kib) * 1024, method=method)))


def run_worker(T: int, chunk_size: int, repeats: int, threads: int, retry: Retry) -> dict:
    return retry.run(lambda: _run_worker(T, chunk_size, repeats, threads))


def _run_worker(T: int, chunk_size: int, repeats: int, threads: int) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_worker", str(T), str(chunk_size), str(repeats),
           "--threads", str(threads)]
    form = "parallel" if T <= chunk_size else "chunkwise"
    share = CpuShare()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=WORKER_TIMEOUT)
    except subprocess.TimeoutExpired:
        return dict(T=T, chunk_size=chunk_size, form=form, skipped=f"timed out after {WORKER_TIMEOUT} s")
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no stderr"]
        return dict(T=T, chunk_size=chunk_size, form=form, skipped=f"failed (rc {proc.returncode}: {tail[0]})")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["share"] = share.fraction()
    _log_prefill(result)
    return result


def next_pow2(n: int) -> int:
    return 1 << (n - 1).bit_length()


def parallel_bytes_estimate(T: int) -> int:
    """The parallel form holds ~4 fp32 [H, T, T] tensors per layer at once (decay, Q Kᵀ, the product, temporaries)."""
    return 4 * RETNET_HEADS * T * T * 4


def prefill_section(lengths: list[int], chunk_sizes: list[int], threads: int, max_repeats: int,
                    retry: Retry) -> list[dict]:
    results = []
    last_parallel = None  # (T, seconds)
    for T in lengths:
        repeats = min(max_repeats, 3 if T <= 2048 else 2)
        # parallel: chunk_size >= T makes the public op take the parallel form
        reason = None
        if parallel_bytes_estimate(T) > PARALLEL_MAX_BYTES:
            reason = f"needs ~{parallel_bytes_estimate(T) / 2**30:.0f} GiB > 16 GiB"
        elif last_parallel is not None:
            estimate = last_parallel[1] * (T / last_parallel[0]) ** 2
            if estimate > PARALLEL_MAX_SECONDS:
                reason = f"estimated {estimate:.0f} s > {PARALLEL_MAX_SECONDS:.0f} s from T={last_parallel[0]}"
        if reason:
            results.append(dict(T=T, chunk_size=next_pow2(T), form="parallel", skipped=reason))
        else:
            r = run_worker(T, next_pow2(T), repeats, threads, retry)
            results.append(r)
            if "times" in r:
                last_parallel = (T, min(r["times"]))
        if "skipped" in results[-1]:
            _log_prefill(results[-1])
        for C in chunk_sizes:
            if C >= T:
                continue  # would be the parallel form again
            results.append(run_worker(T, C, repeats, threads, retry))
    return results


def _log_prefill(r: dict) -> None:
    what = r.get("skipped") or (f"best {min(r['times']):.2f} s, peak +{mib(r['peak_bytes'])}, "
                                f"others' CPU {100 * r['share']:.0f}%")
    print(f"  prefill T={r['T']} chunk_size={r['chunk_size']} ({r.get('form')}): {what}", file=sys.stderr, flush=True)


def print_prefill(results: list[dict], chunk_sizes: list[int]) -> None:
    print("### 3. RetNet prefill: parallel vs chunkwise form (model level, batch 1, `use_cache=True`, "
          "`logits_to_keep=1`; fresh subprocess per row)\n")
    print("| T | form | chunk_size | time s (best) | time s (median) | runs | peak RSS above pre-forward RSS "
          "| others' CPU share (attempts) |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        if "skipped" in r:
            print(f"| {r['T']} | {r.get('form', '?')} | {r['chunk_size']} | skipped ({r['skipped']}) | | | | |")
            continue
        print(f"| {r['T']} | {r['form']} | {r['chunk_size']} | {min(r['times']):.3f} "
              f"| {statistics.median(r['times']):.3f} | {len(r['times'])} | {mib(r['peak_bytes'])} "
              f"| {100 * r['share']:.0f}% ({r['attempts']}) |")
    methods = {r["method"] for r in results if "method" in r}
    print(f"\nTime: best (min) of the runs in one subprocess, after a 128-token warm-up forward; on a shared machine "
          f"the minimum is the least disturbed run. Peak memory method: {', '.join(sorted(methods)) or 'n/a'}; the "
          "model's weights (~230 MiB) are resident before the forward and are not counted.\n")
    base = min(chunk_sizes)
    print(f"Parallel relative to chunkwise (chunk_size={base}):\n")
    print("| T | parallel time / chunkwise time (best) | parallel peak / chunkwise peak |")
    print("|---:|---:|---:|")
    by_key = {(r["T"], r["form"], r["chunk_size"]): r for r in results if "times" in r}
    for T in sorted({r["T"] for r in results}):
        par = by_key.get((T, "parallel", next_pow2(T)))
        chk = by_key.get((T, "chunkwise", base))
        if par and chk:
            tr = min(par["times"]) / min(chk["times"])
            mr = par["peak_bytes"] / chk["peak_bytes"] if chk["peak_bytes"] else float("nan")
            print(f"| {T} | {tr:.2f}x | {mr:.2f}x |")
        else:
            print(f"| {T} | n/a | n/a |")
    print()


# --------------------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="contexts and prefill lengths up to 2048 (~2 min)")
    parser.add_argument("--steps", type=int, default=None, help="timed decode steps per context (16 quick, 32 full)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--retries", type=int, default=2,
                        help="re-measure a row up to this many times while other processes use >15%% of the CPU")
    parser.add_argument("--_worker", nargs=3, type=int, metavar=("T", "CHUNK", "REPEATS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._worker:
        prefill_worker(*args._worker, threads=args.threads)
        return

    torch.set_num_threads(args.threads)
    if args.quick:
        contexts, lengths, chunk_sizes, steps = [512, 1024, 2048], [512, 1024, 2048], [64, 256], 16
    else:
        contexts = [512, 1024, 2048, 4096, 8192, 16384]
        lengths, chunk_sizes, steps = [512, 1024, 2048, 4096, 8192], [64, 256, 512], 32
    steps = args.steps or steps
    warmup = 2
    command = " ".join([".venv/bin/python" if ".venv" in sys.executable else Path(sys.executable).name,
                        os.path.relpath(__file__, Path.cwd()) if Path(__file__).is_relative_to(Path.cwd())
                        else __file__, *sys.argv[1:]])
    t_start, run_share = time.perf_counter(), CpuShare()
    retry = Retry(args.retries, budget_s=75 if args.quick else 720)  # no waits or retries after this

    print("## RetNet vs Llama (CPU, fp32)\n")
    software = f"torch {torch.__version__} ({args.threads} threads), transformers {transformers.__version__}"
    print(machine_description(command, software) + "\n")
    llama_probe, retnet_probe = build("llama"), build("retnet")
    lp = n_params(llama_probe), n_params(llama_probe, embeddings=False)
    rp = n_params(retnet_probe), n_params(retnet_probe, embeddings=False)
    del llama_probe, retnet_probe
    print("| model | layers | hidden | heads x head dim | FFN | params | params w/o embeddings |")
    print("|---|---:|---:|---|---:|---:|---:|")
    print(f"| Llama (transformers `LlamaForCausalLM`, SDPA) | {LAYERS} | {HIDDEN} | {LLAMA_HEADS} x "
          f"{HIDDEN // LLAMA_HEADS} (q, k, v) | SwiGLU {INTERMEDIATE} | {lp[0] / 1e6:.2f} M | {lp[1] / 1e6:.2f} M |")
    print(f"| RetNet (paperzoo `RetNetForCausalLM`, reference kernels) | {LAYERS} | {HIDDEN} | {RETNET_HEADS} x "
          f"{HIDDEN // RETNET_HEADS} (q, k), x {RETNET_VALUE // RETNET_HEADS} (v, gate) | SwiGLU {INTERMEDIATE} "
          f"| {rp[0] / 1e6:.2f} M | {rp[1] / 1e6:.2f} M |")
    print(f"\nRetNet has {100 * (rp[0] / lp[0] - 1):+.1f}% parameters ({100 * (rp[1] / lp[1] - 1):+.1f}% without "
          "embeddings): its extra swish gate projection W_G. Vocab 32000, untied embeddings, random weights.\n")

    print(f"[decode] contexts {contexts}, {steps} steps", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    dec = decode_section(contexts, steps, warmup, retry)
    decode_s = time.perf_counter() - t0
    print(f"Llama caches are built by real prefill (forward passes with the cache, {PREFILL_FEED} tokens per "
          "forward, extended incrementally from one context to the next); so are RetNet's states (chunkwise form, "
          "chunk_size 64).\n")
    print_decode(dec, steps, warmup)

    print(f"[prefill] T {lengths}, chunk sizes {chunk_sizes}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    pre = prefill_section(lengths, chunk_sizes, args.threads, 2 if args.quick else 3, retry)
    prefill_s = time.perf_counter() - t0
    print_prefill(pre, chunk_sizes)

    rows = dec["rows"]
    first, last = rows[0], rows[-1]
    at8k = next((r for r in rows if r["context"] == 8192), last)
    print("### Key figures\n")
    shown = []
    for r in (first, at8k, last):
        if r["context"] in shown:
            continue
        shown.append(r["context"])
        print(f"- decode at {r['context']}: Llama {fmt_ms(r['llama_median'])} ms/token, RetNet "
              f"{fmt_ms(r['retnet_median'])} ms/token -> Llama/RetNet {r['llama_median'] / r['retnet_median']:.2f}x; "
              f"cache Llama {mib(r['llama_bytes'])} vs RetNet {mib(r['retnet_bytes'])} "
              f"(RetNet/Llama {r['retnet_bytes'] / r['llama_bytes']:.4f})")
    Tmax = max(r["T"] for r in pre)
    by = {(r["T"], r["form"]): r for r in pre
          if "times" in r and r["chunk_size"] in (next_pow2(r["T"]), min(chunk_sizes))}
    par, chk = by.get((Tmax, "parallel")), by.get((Tmax, "chunkwise"))
    if par and chk:
        print(f"- prefill T={Tmax} (best of runs): parallel {min(par['times']):.2f} s / +{mib(par['peak_bytes'])} vs "
              f"chunkwise (C={chk['chunk_size']}) {min(chk['times']):.2f} s / "
              f"+{mib(chk['peak_bytes'])}")
    print(f"\nWall time: decode section {decode_s:.0f} s, prefill section {prefill_s:.0f} s, total "
          f"{time.perf_counter() - t_start:.0f} s; other processes used {run_share.others()} of the machine's CPU time "
          f"during the run; load average at end: {read_loadavg()}")


if __name__ == "__main__":
    main()

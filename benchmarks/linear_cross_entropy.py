"""Linear cross-entropy on CPU: the chunked PyTorch reference vs the naive [N, V] logits, peak memory and time.

    nice .venv/bin/python benchmarks/linear_cross_entropy.py           # full run (V = 100k and 1M; ~6 min, 1 thread)
    nice .venv/bin/python benchmarks/linear_cross_entropy.py --quick   # V = 10k and 100k at N = 1024 (~1 min)

Loss = cross-entropy of hidden @ weight.T [N, V] against random labels, forward + backward (gradients of hidden and
weight), fp32, one thread by default (`--threads`: on a shared 2-core machine a second thread makes every one of the
chunked form's small parallel regions wait for whichever thread was preempted, and the timings scatter 2x):
  * naive: `linear_cross_entropy_naive`: the fp32 logits and F.cross_entropy under autograd (what an LM head or a
    full-softmax recommender does by default);
  * chunked: `linear_cross_entropy(..., backend="reference")`: chunks of C items (C = 256 at N = 4096) with an online
    logsumexp; the backward recomputes each chunk (paperzoo/kernels/linear_cross_entropy/README.md).

Every (impl, N, V, d) runs in a fresh subprocess, naive and chunked alternating: inputs are built and a small call
warms the thread pool, then the peak-RSS watermark is reset (/proc/self/clear_refs) and the runs are timed; the peak
is VmHWM minus VmRSS just before the first run, so the inputs (W: V·d·4 bytes) do not count, while the gradients
(dW as large as W) do: they are outputs every implementation must allocate. The table also gives the peak minus
those gradient bytes ("working memory"). The naive form is skipped where its two [N, V] fp32 tensors (logits and
log-softmax output, alive together in the forward) exceed 85% of the available memory; V = 1M is then also compared
at a smaller N where it fits.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # runnable from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from _machine import machine_description, read_loadavg  # noqa: E402  (benchmarks/ is on sys.path)
from retnet import CpuShare, mib, proc_status_kib, reset_peak_rss  # noqa: E402

IMPLS = ("naive", "chunked")
WORKER_TIMEOUT = 900


def mem_available() -> int:
    for line in open("/proc/meminfo"):
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def naive_bytes(N: int, V: int) -> int:
    """The naive form's two [N, V] fp32 tensors alive together (logits, log-softmax output): a lower bound."""
    return 2 * N * V * 4


def grad_bytes(N: int, V: int, d: int) -> int:
    return (N + V) * d * 4


# --------------------------------------------------------------------------------------------------- worker


def worker(impl: str, N: int, V: int, d: int, repeats: int, threads: int) -> None:
    """Runs in a fresh subprocess; prints one JSON line."""
    from paperzoo.kernels.linear_cross_entropy import linear_cross_entropy, linear_cross_entropy_naive

    torch.set_num_threads(threads)
    fn = linear_cross_entropy_naive if impl == "naive" else lambda h, w, y: linear_cross_entropy(
        h, w, y, backend="reference")  # fmt: skip
    g = torch.Generator().manual_seed(0)
    h = (torch.randn(N, d, generator=g) * (3.0 / d**0.5)).requires_grad_()
    w = torch.randn(V, d, generator=g).requires_grad_()
    y = torch.randint(0, V, (N,), generator=g)
    small = [t[:64].detach().clone().requires_grad_() for t in (h, w)]
    fn(small[0], small[1], y[:64] % 64).backward()  # warm-up: thread pool, first-call costs
    del small
    gc.collect()
    method = reset_peak_rss("unavailable")
    base_kib = proc_status_kib("VmRSS") or 0
    fwd, total, losses = [], [], []
    for _ in range(repeats):
        h.grad = w.grad = None
        t0 = time.perf_counter()
        loss = fn(h, w, y)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        fwd.append(t1 - t0)
        total.append(t2 - t0)
        losses.append(loss.item())
    peak = max(0, (proc_status_kib("VmHWM") or 0) - base_kib) * 1024 if method != "unavailable" else None
    check = float(h.grad.double().norm()), float(w.grad.double().norm())
    print(json.dumps(dict(impl=impl, N=N, V=V, d=d, fwd=fwd, total=total, loss=losses[0], grad_norms=check,
                          peak_bytes=peak, method=method)))


def run_worker(impl: str, N: int, V: int, d: int, repeats: int, threads: int) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_worker", impl, str(N), str(V), str(d), str(repeats),
           "--threads", str(threads)]
    share = CpuShare()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=WORKER_TIMEOUT)
    except subprocess.TimeoutExpired:
        return dict(impl=impl, N=N, V=V, d=d, skipped=f"timed out after {WORKER_TIMEOUT} s")
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no stderr"]
        return dict(impl=impl, N=N, V=V, d=d, skipped=f"failed (rc {proc.returncode}: {tail[0]})")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["share"] = share.fraction()
    return result


# --------------------------------------------------------------------------------------------------- main


def log(r: dict) -> None:
    what = r.get("skipped") or (f"fwd+bwd best {min(r['total']):.2f} s, peak +{mib(r['peak_bytes'] or 0)}, "
                                f"others' CPU {100 * r['share']:.0f}%")
    print(f"  {r['impl']} N={r['N']} V={r['V']} d={r['d']}: {what}", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="V = 10k / 100k at N = 1024 (~1 min)")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    parser.add_argument("--repeats", type=int, default=2,
                        help="timed forward+backward runs per subprocess (1 where N·V·d > 1e12)")
    parser.add_argument("--_worker", nargs=5, metavar=("IMPL", "N", "V", "D", "REPEATS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._worker:
        impl, *sizes = args._worker
        worker(impl, *(int(s) for s in sizes), threads=args.threads)
        return

    if args.quick:
        cases = [(1024, V, d) for V in (10_000, 100_000) for d in (64, 512)]
    else:
        cases = [(4096, V, d) for V in (100_000, 1_000_000) for d in (64, 512)]
        cases += [(512, 1_000_000, d) for d in (64, 512)]  # V = 1M where the naive form fits in memory
    command = " ".join([".venv/bin/python" if ".venv" in sys.executable else Path(sys.executable).name,
                        os.path.relpath(__file__, Path.cwd()) if Path(__file__).is_relative_to(Path.cwd())
                        else __file__, *sys.argv[1:]])
    available = mem_available()
    t_start, run_share = time.perf_counter(), CpuShare()
    print("## Linear cross-entropy: chunked reference vs naive logits (CPU, fp32, forward + backward)\n")
    print(machine_description(command, f"torch {torch.__version__} ({args.threads} threads)") + "\n")

    results = []
    for N, V, d in cases:
        for impl in IMPLS:
            if impl == "naive" and naive_bytes(N, V) > 0.85 * available:
                r = dict(impl=impl, N=N, V=V, d=d, skipped=f"not run: needs > {naive_bytes(N, V) / 2**30:.0f} GiB "
                         f"(two [N, V] fp32 tensors) of {available / 2**30:.0f} GiB available")  # fmt: skip
            else:
                r = run_worker(impl, N, V, d, 1 if N * V * d > 1e12 else args.repeats, args.threads)
            log(r)
            results.append(r)

    print("| N | V | d | impl | fwd s (best) | fwd+bwd s (best) | peak RSS above inputs | working memory (peak − "
          "dh, dW) | others' CPU |")  # fmt: skip
    print("|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    for r in results:
        head = f"| {r['N']} | {r['V']:,} | {r['d']} | {r['impl']} "
        if "skipped" in r:
            print(head + f"| {r['skipped']} | | | | |")
            continue
        peak = r["peak_bytes"]
        work = "n/a" if peak is None else mib(max(0, peak - grad_bytes(r["N"], r["V"], r["d"])))
        print(head + f"| {min(r['fwd']):.2f} | {min(r['total']):.2f} | {'n/a' if peak is None else mib(peak)} "
              f"| {work} | {100 * r['share']:.0f}% |")

    print("\nChunked relative to naive (same N, V, d; best of the runs):\n")
    print("| N | V | d | naive / chunked peak | naive / chunked working memory | chunked / naive fwd+bwd time "
          "| loss agrees |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---|")
    by = {(r["impl"], r["N"], r["V"], r["d"]): r for r in results if "total" in r}
    for N, V, d in cases:
        ch, nv = by.get(("chunked", N, V, d)), by.get(("naive", N, V, d))
        if ch is None:
            print(f"| {N} | {V:,} | {d} | n/a | n/a | n/a | |")
            continue
        if nv is None:  # lower bound: 2 [N, V] fp32 tensors; the runs that fit show 3 alive at the peak
            gb = grad_bytes(N, V, d)
            low, likely = (k * N * V * 4 + gb for k in (2, 3))
            print(f"| {N} | {V:,} | {d} | > {low / ch['peak_bytes']:.0f}x (naive not run: at least "
                  f"{low / 2**30:.0f} GiB, ~{likely / 2**30:.0f} GiB with the three [N, V] tensors seen at the "
                  f"peak where it runs) | > {(low - gb) / max(ch['peak_bytes'] - gb, 1):.0f}x | n/a | |")
            continue
        gb = grad_bytes(N, V, d)
        ratio_work = (nv["peak_bytes"] - gb) / max(ch["peak_bytes"] - gb, 1)
        agree = abs(nv["loss"] - ch["loss"]) <= 1e-4 * abs(nv["loss"]) and all(
            abs(a - b) <= 1e-4 * abs(a) for a, b in zip(nv["grad_norms"], ch["grad_norms"]))  # fmt: skip
        print(f"| {N} | {V:,} | {d} | {nv['peak_bytes'] / ch['peak_bytes']:.1f}x | {ratio_work:.1f}x "
              f"| {min(ch['total']) / min(nv['total']):.2f}x | {'yes' if agree else 'NO'} "
              f"(loss {ch['loss']:.5f}) |")
    print(f"\nPeak memory: {', '.join(sorted({r['method'] for r in results if 'method' in r})) or 'n/a'}; the inputs "
          "(h, W) are resident before the first run and not counted. 'loss agrees': loss and the norms of dh, dW "
          "within 1e-4 relative. Times: best of the runs in one subprocess after a warm-up call.")
    print(f"\nWall time {time.perf_counter() - t_start:.0f} s; other processes used {run_share.others()} of the "
          f"machine's CPU time during the run; load average at end: {read_loadavg()}")


if __name__ == "__main__":
    main()

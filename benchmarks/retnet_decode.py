"""RetNet vs Llama decode per token at two widths on CPU: eager, and RetNet's compiled decoding step.

    .venv/bin/python benchmarks/retnet_decode.py            # widths 256/4 layers and 512/8 layers, contexts to 16k
    .venv/bin/python benchmarks/retnet_decode.py --quick    # width 256 only, contexts 512 and 2048

The compiled step is what `generate(..., cache_implementation="static")` runs on a GPU (transformers' auto-compile):
`model.get_compiled_call(CompileConfig(fullgraph=True, mode="default"))`, one full graph for the one-token forward,
here with inductor's CPU code. Llama is transformers' `LlamaForCausalLM` (SDPA, DynamicCache), eager at every
context; at the largest context it is also compiled the same way with a StaticCache sized exactly to that context
(a static cache attends over its whole length, so it is only a fair comparison where the cache is full).

Each context is prefilled for real (forward passes with the cache, 2048 tokens per forward, extended from one context
to the next), then `--steps` one-token steps feed the cache back in, the variants interleaved step by step so that
load from other processes hits all alike (median per token, and the other processes' CPU share in the run). The
weights are random (fp32, batch 1, vocab 32000, untied embeddings); RetNet runs the PyTorch reference kernels.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # runnable from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import CompileConfig, LlamaConfig, LlamaForCausalLM, StaticCache  # noqa: E402

from paperzoo import RetNetConfig, RetNetForCausalLM  # noqa: E402

from _machine import machine_description, read_loadavg  # noqa: E402  (benchmarks/ is on sys.path)
from retnet import PREFILL_FEED, CpuShare, Retry, fmt_ms, n_params  # noqa: E402

VOCAB = 32000
# (hidden, layers, FFN, Llama heads, RetNet heads): Llama 64-wide heads, RetNet torchscale's 4 heads at 512
WIDTHS = {256: (256, 4, 688, 4, 2), 512: (512, 8, 1376, 8, 4)}
COMPILE = CompileConfig(fullgraph=True, mode="default")  # "reduce-overhead" is CUDA graphs


def build(kind: str, width: int):
    hidden, layers, ffn, llama_heads, retnet_heads = WIDTHS[width]
    torch.manual_seed(0)
    if kind == "retnet":
        config = RetNetConfig(vocab_size=VOCAB, hidden_size=hidden, num_hidden_layers=layers,
                              num_attention_heads=retnet_heads, intermediate_size=ffn, value_size=hidden,
                              kernel_backend="reference")
        return RetNetForCausalLM(config).float().eval()
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=hidden, num_hidden_layers=layers,
                         num_attention_heads=llama_heads, num_key_value_heads=llama_heads, intermediate_size=ffn,
                         max_position_embeddings=32768, tie_word_embeddings=False)
    return LlamaForCausalLM(config).float().eval()


def prefill(model, ids, cache, start: int, end: int):
    """Feed ids[start:end] into `cache` (None: a new one); returns (cache, last logits)."""
    out = None
    for s in range(start, end, PREFILL_FEED):
        out = model(ids[:, s : min(end, s + PREFILL_FEED)], cache=cache, use_cache=True, logits_to_keep=1)
        cache = out.cache
    return cache, out.logits


def time_steps(variants: dict, steps: int, warmup: int) -> dict:
    """variants: name -> (callable, cache, first token). Interleaved one-token steps; median and min per name."""
    state = {name: (fn, copy.deepcopy(cache), token) for name, (fn, cache, token) in variants.items()}
    times = {name: [] for name in variants}
    share = CpuShare()
    for i in range(warmup + steps):
        for name, (fn, cache, token) in state.items():
            t0 = time.perf_counter()
            out = fn(token, cache=cache, use_cache=True)
            dt = time.perf_counter() - t0
            state[name] = (fn, cache, out.logits[:, -1:].argmax(-1))
            if i >= warmup:
                times[name].append(dt)
    return dict(share=share.fraction(), **{n: (statistics.median(t), min(t)) for n, t in times.items()})


@torch.no_grad()
def width_section(width: int, contexts: list[int], steps: int, warmup: int, retry: Retry) -> dict:
    llama, retnet = build("llama", width), build("retnet", width)
    ids = torch.randint(0, VOCAB, (1, max(contexts) + warmup + steps), generator=torch.Generator().manual_seed(1))
    t0 = time.perf_counter()
    retnet_step = retnet.get_compiled_call(COMPILE)
    caches, logits, done, rows = {"llama": None, "retnet": None}, {}, 0, []
    for L in contexts:
        for name, model in (("llama", llama), ("retnet", retnet)):
            caches[name], logits[name] = prefill(model, ids, caches[name], done, L)
        done = L
        first = {name: logits[name][:, -1:].argmax(-1) for name in caches}
        variants = {"llama": (llama, caches["llama"], first["llama"]),
                    "retnet": (retnet, caches["retnet"], first["retnet"]),
                    "retnet_compiled": (retnet_step, caches["retnet"], first["retnet"])}
        if not rows:  # compile outside the timed steps (the first calls trace and generate code)
            time_steps({"retnet_compiled": variants["retnet_compiled"]}, 3, 0)
            print(f"  [{width}] RetNet step compiled in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        if L == contexts[-1]:
            static = StaticCache(config=llama.config, max_cache_len=L + warmup + steps)
            _, static_logits = prefill(llama, ids, static, 0, L)
            llama_step = llama.get_compiled_call(COMPILE)
            time_steps({"llama_compiled": (llama_step, static, static_logits[:, -1:].argmax(-1))}, 3, 0)
            variants["llama_compiled"] = (llama_step, static, static_logits[:, -1:].argmax(-1))
        result = retry.run(lambda: time_steps(variants, steps, warmup))
        print(f"  [{width}] context {L}: " + ", ".join(f"{n} {fmt_ms(result[n][0])} ms" for n in variants)
              + f"; others' CPU {100 * result['share']:.0f}%", file=sys.stderr, flush=True)
        rows.append(dict(context=L, **result))
    return dict(rows=rows, params={"llama": n_params(llama), "retnet": n_params(retnet)})


def print_width(width: int, result: dict, steps: int) -> None:
    hidden, layers, ffn, llama_heads, retnet_heads = WIDTHS[width]
    p = result["params"]
    print(f"### Width {hidden}, {layers} layers, FFN {ffn} (Llama {llama_heads} heads of {hidden // llama_heads}, "
          f"{p['llama'] / 1e6:.1f} M params; RetNet {retnet_heads} heads of {hidden // retnet_heads}, "
          f"{p['retnet'] / 1e6:.1f} M)\n")
    print(f"ms per token, median of {steps} steps (min in brackets).\n")
    print("| context | Llama eager | Llama compiled (static cache) | RetNet eager | RetNet compiled "
          "| Llama eager / RetNet eager | Llama eager / RetNet compiled | Llama compiled / RetNet compiled "
          "| others' CPU (attempts) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in result["rows"]:
        cell = lambda n: f"{fmt_ms(r[n][0])} ({fmt_ms(r[n][1])})" if n in r else "—"
        both = f"{r['llama_compiled'][0] / r['retnet_compiled'][0]:.2f}x" if "llama_compiled" in r else "—"
        print(f"| {r['context']} | {cell('llama')} | {cell('llama_compiled')} | {cell('retnet')} "
              f"| {cell('retnet_compiled')} | {r['llama'][0] / r['retnet'][0]:.2f}x "
              f"| {r['llama'][0] / r['retnet_compiled'][0]:.2f}x | {both} "
              f"| {100 * r['share']:.0f}% ({r['attempts']}) |")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="width 256, contexts 512 and 2048")
    parser.add_argument("--steps", type=int, default=32, help="timed steps per context (default 32)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--retries", type=int, default=2,
                        help="re-measure a row up to this many times while other processes use >15%% of the CPU")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    widths, contexts = ([256], [512, 2048]) if args.quick else ([256, 512], [512, 8192, 16384])
    command = " ".join([".venv/bin/python" if ".venv" in sys.executable else Path(sys.executable).name,
                        os.path.relpath(__file__, Path.cwd()) if Path(__file__).is_relative_to(Path.cwd())
                        else __file__, *sys.argv[1:]])
    t_start, run_share = time.perf_counter(), CpuShare()
    retry = Retry(args.retries, budget_s=120 if args.quick else 900)
    print("## RetNet vs Llama decode per token, eager and compiled (CPU, fp32)\n")
    software = f"torch {torch.__version__} ({args.threads} threads), transformers {transformers.__version__}"
    print(machine_description(command, software) + "\n")
    results = {}
    for width in widths:
        results[width] = width_section(width, contexts, args.steps, 2, retry)
        print_width(width, results[width], args.steps)
    print("### Key figures\n")
    for width, result in results.items():
        for r in result["rows"][1:]:
            print(f"- width {width}, context {r['context']}: Llama eager / RetNet compiled "
                  f"{r['llama'][0] / r['retnet_compiled'][0]:.2f}x (RetNet eager {r['llama'][0] / r['retnet'][0]:.2f}x)"
                  + (f"; both compiled {r['llama_compiled'][0] / r['retnet_compiled'][0]:.2f}x"
                     if "llama_compiled" in r else ""))
    print(f"\nWall time {time.perf_counter() - t_start:.0f} s; other processes used {run_share.others()} of the CPU "
          f"during the run; load average at end: {read_loadavg()}")


if __name__ == "__main__":
    main()

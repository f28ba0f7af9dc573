"""FocusLLM around a real small LLM (SmolLM2-135M-Instruct, `paperzoo.data.local_llm()`), on CPU.

    .venv/bin/python benchmarks/focusllm.py --part passkey                  # (a) (b) (c), ~40 min
    .venv/bin/python benchmarks/focusllm.py --part train --steps 400        # the short training run (d), ~60 min
    .venv/bin/python benchmarks/focusllm.py --part passkey --conditions d --candidates /tmp/focusllm-trained
    .venv/bin/python benchmarks/focusllm.py --part encode                   # batched vs sequential chunks, ~5 min
    .venv/bin/python benchmarks/focusllm.py --part decode --lengths 4096,16384  # sliding vs growing decoding, ~3 min

1. Passkey retrieval, the prompt of the paper's evaluation (Landmark attention's): a task line, the filler "The grass
   is green. The sky is blue. ..." repeated to the total length, "The pass key is N. Remember it. N is the pass key."
   at a depth, and "What is the pass key? The pass key is"; greedy `generate` (7 new tokens); correct when the first
   number in the answer is N. N is 5 random digits (seeded), depths evenly spaced in [0.05, 0.95]. Conditions:
   (a) the base model given only the last `local_window` tokens; (b) the base with full attention (up to its 8,192
   positions); (c) FocusLLM with untrained candidates (copies of the base projections); (d) FocusLLM with the
   candidates of `--part train`. FocusLLM: chunk 512, local window 512, dynamic prompt 64, fp32.
2. Training (d): the demo corpus (`paperzoo.demo.corpus()`, Python's pydoc topics, real English text) in the
   SmolLM2 tokenizer, cut into texts of 1,024-2,048 tokens; `FocusLLMCollator` (continuation and reconstruction per
   text, local window 32-512, chunk 64/128/256/512); transformers' `Trainer`, AdamW lr 1e-4, linear decay, batch 1 text
   (2 samples), the candidates only trained; saves them (`save_pretrained`, the candidates alone) to --output.
3. Chunk encoding (--part encode): one FocusLLM forward (`logits_to_keep=1`) over a random-token input of each length,
   chunks as one batch (`chunk_batch_size=None`) and one at a time (`chunk_batch_size=1`, the official loop), each in a
   fresh subprocess, alternating; seconds and peak RSS above the loaded model (VmHWM after clear_refs).
4. Decoding (--part decode): after a prefill of each length (random tokens), 8 one-token steps with the cache,
   decoding="sliding" (each chunk re-reads the 64-token dynamic prompt) and "growing" (each chunk reads 2 tokens, the
   official decoding) interleaved; median ms per token.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_description  # noqa: E402
from retnet import proc_status_kib  # noqa: E402

FOCUS = dict(chunk_size=512, local_window=512, dynamic_prompt_len=64)
TASK = ("There is an important info hidden inside a lot of irrelevant text. Find it and memorize them. I will quiz "
        "you about the important information there.")
FILLER = " The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
QUESTION = " What is the pass key? The pass key is"


def passkey_ids(tokenizer, length: int, depth: float, key: str) -> torch.Tensor:
    """Token ids [length'] (within a few tokens of `length`) of the passkey prompt, the key at `depth`."""
    encode = lambda text: tokenizer(text, add_special_tokens=False).input_ids
    head, info, tail, filler = encode(TASK), encode(f" The pass key is {key}. Remember it. {key} is the pass key."), \
        encode(QUESTION), encode(FILLER)
    room = max(length - len(head) - len(info) - len(tail), 0)
    hay = (filler * (room // len(filler) + 1))[:room]
    at = int(depth * len(hay))
    return torch.tensor(head + hay[:at] + info + hay[at:] + tail)


def answer(model, tokenizer, ids: torch.Tensor) -> str:
    with torch.no_grad():
        out = model.generate(ids[None], attention_mask=torch.ones_like(ids[None]), max_new_tokens=7, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id or 0)
    return tokenizer.decode(out[0, len(ids):], skip_special_tokens=True)


def passkey(lengths: list[int], samples: int, conditions: str, candidates: str | None) -> dict:
    import paperzoo
    from paperzoo.data import local_llm

    torch.set_num_threads(2)
    base, tokenizer = local_llm()
    base.eval()
    rng = random.Random(0)
    cases = [(n, 0.05 + 0.9 * i / max(samples - 1, 1), f"{rng.randint(10000, 99999)}")
             for n in lengths for i in range(samples)]
    limit = base.config.max_position_embeddings
    runs = {}
    if "a" in conditions:
        runs["a"] = lambda ids: answer(base, tokenizer, ids[-FOCUS["local_window"]:])
    if "b" in conditions:
        runs["b"] = lambda ids: answer(base, tokenizer, ids) if len(ids) + 7 <= limit else None
    focus = None
    if "c" in conditions or "d" in conditions:
        if "d" in conditions:
            focus = paperzoo.FocusLLMForCausalLM.from_pretrained(candidates, base=base).eval()
            runs["d"] = lambda ids: answer(focus, tokenizer, ids)
        else:
            focus = paperzoo.FocusLLMForCausalLM.from_base(base, **FOCUS).eval()
            runs["c"] = lambda ids: answer(focus, tokenizer, ids)
    results = {c: {} for c in runs}
    for n, depth, key in cases:
        ids = passkey_ids(tokenizer, n, depth, key)
        for condition, run in runs.items():
            t0 = time.perf_counter()
            text = run(ids)
            seconds = time.perf_counter() - t0
            if text is None:
                continue
            found = re.findall(r"\d+", text)
            ok = bool(found) and found[0] == key
            results[condition].setdefault(n, []).append(ok)
            print(f"  ({condition}) {n} tokens, depth {depth:.2f}: {key} -> {text!r} {'ok' if ok else 'WRONG'} "
                  f"({seconds:.1f} s)", file=sys.stderr, flush=True)
    return results


def train(steps: int, output: str) -> dict:
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments, TrainerCallback

    import paperzoo
    from paperzoo.data import local_llm
    from paperzoo.demo import corpus
    from paperzoo.modeling.focusllm_training import FocusLLMCollator

    torch.set_num_threads(2)
    base, tokenizer = local_llm()
    model = paperzoo.FocusLLMForCausalLM.from_base(base, **FOCUS)
    ids = tokenizer(corpus(), add_special_tokens=False).input_ids
    rng = random.Random(0)
    texts, at = [], 0
    while at + 2048 <= len(ids):
        n = rng.randint(1024, 2048)
        texts.append({"input_ids": ids[at : at + n]})
        at += n
    collator = FocusLLMCollator(local_window=(32, 512), chunk_sizes=(64, 128, 256, 512), seed=0,
                                pad_token_id=tokenizer.pad_token_id or 0)
    losses = []

    class Record(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                losses.append((state.global_step, logs["loss"]))
                print(f"  step {state.global_step}: loss {logs['loss']:.3f}", file=sys.stderr, flush=True)

    args = TrainingArguments(output_dir=output + "-trainer", per_device_train_batch_size=1, max_steps=steps,
                             learning_rate=1e-4, lr_scheduler_type="linear", logging_steps=10, save_strategy="no",
                             report_to=[], use_cpu=True, seed=0, remove_unused_columns=False)
    trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_list(texts), data_collator=collator,
                      callbacks=[Record()])
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    model.save_pretrained(output)
    return {"steps": steps, "seconds": seconds, "texts": len(texts), "losses": losses,
            "files": sorted(p.name for p in Path(output).iterdir())}


def encode_worker(length: int, chunk_batch_size: int | None) -> None:
    import paperzoo
    from paperzoo.data import local_llm

    torch.set_num_threads(2)
    base, _ = local_llm()
    model = paperzoo.FocusLLMForCausalLM.from_base(base, chunk_batch_size=chunk_batch_size, **FOCUS).eval()
    ids = torch.randint(100, 40000, (1, length), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model(ids[:, :1200], logits_to_keep=1, use_cache=False)  # warm-up
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # VmHWM := VmRSS
        rss = proc_status_kib("VmRSS") or 0
        t0 = time.perf_counter()
        model(ids, logits_to_keep=1, use_cache=False)
        seconds = time.perf_counter() - t0
    print(json.dumps({"seconds": seconds, "peak_bytes": ((proc_status_kib("VmHWM") or 0) - rss) * 1024}))


def encode(lengths: list[int]) -> dict:
    results = {}
    for n in lengths:
        for size in (None, 1):
            cmd = [sys.executable, __file__, "--_worker", str(n), str(size)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
            results[(n, size)] = json.loads(out)
            print(f"  encode {n} tokens, chunk_batch_size={size}: {results[(n, size)]}", file=sys.stderr, flush=True)
    return results


def decode(lengths: list[int], steps: int = 8) -> dict:
    """ms per generated token after a prefill, decoding="sliding" vs "growing", steps interleaved (median)."""
    import statistics

    import paperzoo
    from paperzoo.data import local_llm

    torch.set_num_threads(2)
    base, _ = local_llm()
    model = paperzoo.FocusLLMForCausalLM.from_base(base, **FOCUS).eval()
    results = {}
    for n in lengths:
        ids = torch.randint(100, 40000, (1, n + steps), generator=torch.Generator().manual_seed(0))
        caches, times = {}, {"sliding": [], "growing": []}
        with torch.no_grad():
            for mode in times:
                model.config.decoding = mode
                caches[mode] = model(ids[:, :n], use_cache=True, logits_to_keep=1).cache
            for t in range(steps):
                for mode in times:
                    model.config.decoding = mode
                    t0 = time.perf_counter()
                    model(ids[:, n + t : n + t + 1], cache=caches[mode], logits_to_keep=1)
                    times[mode].append(time.perf_counter() - t0)
        results[n] = {mode: 1000 * statistics.median(v) for mode, v in times.items()}
        print(f"  decode {n} tokens: {results[n]}", file=sys.stderr, flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--part", choices=("passkey", "train", "encode", "decode"), default="passkey")
    parser.add_argument("--lengths", default="512,1024,2048,4096,8192,16384,32768")
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--conditions", default="abc")
    parser.add_argument("--candidates", default="/tmp/focusllm-trained")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--output", default="/tmp/focusllm-trained")
    parser.add_argument("--_worker", nargs=2)
    args = parser.parse_args()
    if args._worker:
        n, size = args._worker
        return encode_worker(int(n), None if size == "None" else int(size))
    import transformers

    print(machine_description(" ".join(["python", *sys.argv]), f"torch {torch.__version__}, transformers "
                              f"{transformers.__version__}"))
    lengths = [int(x) for x in args.lengths.split(",")]
    if args.part == "passkey":
        results = passkey(lengths, args.samples, args.conditions, args.candidates)
        print("\n| tokens | " + " | ".join(f"({c})" for c in results) + " |")
        print("|---|" + "---|" * len(results))
        for n in lengths:
            cells = [f"{sum(r[n])}/{len(r[n])}" if n in r else "n/a" for r in results.values()]
            print(f"| {n:,} | " + " | ".join(cells) + " |")
    elif args.part == "train":
        print(json.dumps(train(args.steps, args.output), indent=1))
    elif args.part == "decode":
        results = decode(lengths)
        print("\n| tokens | sliding ms/token | growing ms/token | sliding / growing |")
        print("|---|---|---|---|")
        for n in lengths:
            r = results[n]
            print(f"| {n:,} | {r['sliding']:.0f} | {r['growing']:.0f} | {r['sliding'] / r['growing']:.1f}x |")
    else:
        results = encode(lengths)
        print("\n| tokens | batched s | sequential s | speed-up | batched peak MiB | sequential peak MiB |")
        print("|---|---|---|---|---|---|")
        for n in lengths:
            b, s = results[(n, None)], results[(n, 1)]
            print(f"| {n:,} | {b['seconds']:.1f} | {s['seconds']:.1f} | {s['seconds'] / b['seconds']:.2f}x | "
                  f"{b['peak_bytes'] / 2**20:.0f} | {s['peak_bytes'] / 2**20:.0f} |")


if __name__ == "__main__":
    main()

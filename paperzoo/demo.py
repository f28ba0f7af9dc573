"""`make demo`: train a small RetNet on a text that ships with Python, export it, reload it without paperzoo.

    python -m paperzoo.demo [--seconds 60] [--output demo_out]

1. corpus: the help topics of Python's own documentation (`pydoc_data.topics`, part of every CPython);
2. a byte-level BPE tokenizer trained on it with `tokenizers`, saved with the model;
3. about a minute of AdamW on a 4-layer RetNet, held-out loss before and after;
4. `paperzoo.hub.export` to a self-contained Hub folder;
5. a fresh Python process in which paperzoo cannot be imported loads it with
   `AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)` and generates with `pipeline("text-generation")`;
6. decoding speed of the parallel form (recompute the prefix each token) vs the recurrent form (O(1) state), and the
   state's size next to the KV cache a Transformer of the same width and depth would hold.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import torch

SEQ_LEN, BATCH = 128, 16


def corpus() -> str:
    from pydoc_data.topics import topics

    return "\n\n".join(topics[key] for key in sorted(topics))


def train_tokenizer(text: str, vocab_size: int = 2048):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([text[i : i + 10_000] for i in range(0, len(text), 10_000)], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                                   bos_token="<|endoftext|>")


def batches(ids: torch.Tensor, generator: torch.Generator):
    while True:
        starts = torch.randint(0, len(ids) - SEQ_LEN - 1, (BATCH,), generator=generator)
        yield torch.stack([ids[s : s + SEQ_LEN] for s in starts.tolist()])


@torch.no_grad()
def held_out_loss(model, ids: torch.Tensor) -> float:
    model.eval()
    windows = ids[: (len(ids) // SEQ_LEN) * SEQ_LEN].view(-1, SEQ_LEN)[:32]
    loss = model(windows, labels=windows).loss.item()
    model.train()
    return loss


@torch.no_grad()
def decode_tokens_per_s(model, prompt: torch.Tensor, new_tokens: int, use_cache: bool) -> float:
    model.eval()
    start = time.perf_counter()
    model.generate(prompt, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                   use_cache=use_cache, attention_mask=torch.ones_like(prompt))
    return new_tokens / (time.perf_counter() - start)


FRESH_PROCESS = textwrap.dedent(
    """
    import json, sys
    class HidePaperzoo:  # the bundle must load where paperzoo is not installed
        def find_spec(self, name, path=None, target=None):
            if name == "paperzoo" or name.startswith("paperzoo."):
                raise ImportError("paperzoo is hidden in this process")
    sys.meta_path.insert(0, HidePaperzoo())
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline
    folder, prompt = sys.argv[1], sys.argv[2]
    model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(ids).logits[0, -1]
    generator = pipeline("text-generation", model=model, tokenizer=tokenizer)
    text = generator(prompt, max_new_tokens=40, do_sample=False)[0]["generated_text"]
    print(json.dumps({"class": type(model).__module__ + "." + type(model).__name__,
                      "logits": logits.tolist(), "text": text}))
    """
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="training time budget")
    parser.add_argument("--output", default="demo_out", help="where the Hub folder is written")
    args = parser.parse_args(argv)

    import paperzoo
    from paperzoo.hub import export

    torch.manual_seed(0)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    text = corpus()
    tokenizer = train_tokenizer(text)
    ids = torch.tensor(tokenizer(text).input_ids)
    split = int(0.95 * len(ids))
    train_ids, eval_ids = ids[:split], ids[split:]
    print(f"corpus: pydoc_data.topics, {len(text):,} characters -> {len(ids):,} BPE tokens (vocab {len(tokenizer)})")

    config = paperzoo.RetNetConfig(vocab_size=len(tokenizer), hidden_size=128, num_hidden_layers=4,
                                   num_attention_heads=2, intermediate_size=216, chunk_size=64,
                                   bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
                                   pad_token_id=tokenizer.pad_token_id)
    model = paperzoo.RetNetForCausalLM(config)
    print(f"model: RetNet, {sum(p.numel() for p in model.parameters()):,} parameters, {config.num_hidden_layers} layers")
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.98), weight_decay=0.05)
    loss_before = held_out_loss(model, eval_ids)
    data, steps, start = batches(train_ids, torch.Generator().manual_seed(0)), 0, time.perf_counter()
    model.train()
    while time.perf_counter() - start < args.seconds:
        batch = next(data)
        loss = model(batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        steps += 1
        if steps % 20 == 0:
            print(f"  step {steps:4d}  train loss {loss.item():.3f}  ({time.perf_counter() - start:.0f}s)", flush=True)
    train_seconds = time.perf_counter() - start
    loss_after = held_out_loss(model, eval_ids)
    model.eval()

    folder = Path(args.output) / "retnet-pydoc"
    export(model, folder, tokenizer=tokenizer)
    prompt = "The with statement"
    child = subprocess.run([sys.executable, "-c", FRESH_PROCESS, str(folder.resolve()), prompt],
                           capture_output=True, text=True, cwd=folder.resolve().parent)
    if child.returncode != 0:
        raise SystemExit(f"the fresh process failed to load the export:\n{child.stderr[-3000:]}")
    fresh = json.loads(child.stdout.strip().splitlines()[-1])
    with torch.no_grad():
        here = model(tokenizer(prompt, return_tensors="pt").input_ids).logits[0, -1]
    max_diff = (torch.tensor(fresh["logits"]) - here).abs().max().item()

    context = eval_ids[:1024][None]
    parallel_tps = decode_tokens_per_s(model, context, 32, use_cache=False)
    recurrent_tps = decode_tokens_per_s(model, context, 32, use_cache=True)
    with torch.no_grad():
        cache = model(context, use_cache=True).cache
    state_bytes = sum(t.numel() * t.element_size() for layer in cache.layers
                      for t in layer.recurrent_states.values() if t is not None)
    kv_bytes = 2 * config.num_hidden_layers * context.shape[1] * config.hidden_size * 4  # fp32 K and V per layer

    rows = [
        ("held-out loss before / after", f"{loss_before:.3f} / {loss_after:.3f} "
                                          f"(ppl {math.exp(loss_before):.0f} / {math.exp(loss_after):.1f})"),
        ("training", f"{steps} steps of {BATCH}x{SEQ_LEN} tokens in {train_seconds:.0f}s"),
        ("Hub folder", f"{folder} ({', '.join(sorted(p.name for p in folder.iterdir()))})"),
        ("fresh process (no paperzoo)", f"{fresh['class']}, max |Δ logits| vs here {max_diff:.1e}"),
        ("decode @1024 ctx, parallel form", f"{parallel_tps:.1f} tokens/s (recomputes the prefix)"),
        ("decode @1024 ctx, recurrent form", f"{recurrent_tps:.1f} tokens/s ({recurrent_tps / parallel_tps:.1f}x)"),
        ("cache bytes @1024 ctx", f"RetNet state {state_bytes:,} B vs {kv_bytes:,} B for a same-size "
                                  f"Transformer's fp32 KV cache ({kv_bytes / state_bytes:.1f}x), constant in context"),
    ]
    width = max(len(k) for k, _ in rows)
    print("\n" + "\n".join(f"{k:<{width}}  {v}" for k, v in rows))
    print(f"\npipeline('text-generation') in the fresh process:\n  {fresh['text']!r}")
    if max_diff > 1e-4:
        raise SystemExit(f"the reloaded model disagrees with the trained one (max |Δ logits| = {max_diff:.2e})")


if __name__ == "__main__":
    main()

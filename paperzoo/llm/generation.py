"""Greedy generation for the LLM stages (FlexKBQA's, the diagnosis pipeline's explanations): any Hugging Face
causal LM, batched (left-padded `generate`), one line per prompt, answers cached on disk so that a rerun costs nothing.

Each row stops at its first newline (a stopping criterion on the tokens that hold one). The `text-generation`
pipeline was the first choice, but with the long few-shot prompts here (~1,200 tokens) it generated past the newline
with both `stop_strings` and `stopping_criteria` given (transformers 5.25), which tripled the cost of every prompt.

`model` is None (the offline SmolLM2-135M-Instruct of paperzoo.data.local_llm), a Hub id or local folder, or a model
object (then `tokenizer` too). The cache is one JSON-lines file per model under `<cache>/llm-generations/`
(PAPERZOO_CACHE, else ~/.cache/paperzoo), keyed by the prompt and the generation settings; the file is named after the model's
fingerprint (its name, its config and a checksum of its weights), so a fine-tuned copy never reads the answers of
its base. Lines are appended whole and flushed; a line cut by a crash is ignored when read.

Prompts are plain few-shot completions (the format of the FlexKBQA prompts), so a model without a chat template works
the same as one with.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from tqdm.auto import tqdm
from transformers import StoppingCriteriaList


class _LineEnd:
    """Stops a row once it has generated a token whose text holds a newline (a finished row stays finished: generate
    keeps it padded)."""

    def __init__(self, tokenizer):
        import torch

        vocab = tokenizer.get_vocab()
        ids = [i for i in vocab.values() if "\n" in tokenizer.decode([i])]
        self.newline = torch.zeros(max(vocab.values()) + 1, dtype=torch.bool)
        self.newline[ids] = True

    def __call__(self, input_ids, scores, **kwargs):
        return self.newline.to(input_ids.device)[input_ids[:, -1]]


def _fingerprint(model) -> str:
    import torch

    digest = hashlib.sha256()
    digest.update(str(getattr(model.config, "_name_or_path", "")).encode())
    digest.update(model.config.to_json_string(use_diff=False).encode())
    with torch.no_grad():
        for _, tensor in list(model.state_dict().items())[:: max(1, len(model.state_dict()) // 8)]:
            digest.update(f"{tensor.double().sum().item():.10e}".encode())
    return digest.hexdigest()[:16]


class CachedGenerator:
    """Greedy completions of prompts, batched, cached.

    batch_size: prompts per forward (each padded before its own text). cache: False to never read or write the disk cache; a folder to
    use instead of the default. progress: a tqdm bar per call with more than one batch.
    """

    def __init__(self, model=None, tokenizer=None, batch_size: int = 8, cache: bool | str | Path = True,
                 progress: bool = True, dtype=None):
        from . import load_causal_lm

        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"batch_size={batch_size!r} must be a positive integer")
        model, tokenizer = load_causal_lm(model, tokenizer, dtype)
        self.model, self.tokenizer, self.batch_size, self.progress = model, tokenizer, batch_size, progress
        self._prefixes: dict = {}
        self._stop = StoppingCriteriaList([_LineEnd(tokenizer)])
        self.name = str(getattr(model.config, "_name_or_path", type(model).__name__))
        self._cache_file = None
        if cache:
            from ..data import _cache_root

            folder = Path(cache) if not isinstance(cache, bool) else _cache_root() / "llm-generations"
            self._cache_file = folder / f"{_fingerprint(model)}.jsonl"
        self._memory: dict[str, str] = self._read_cache()

    def _read_cache(self) -> dict[str, str]:
        if self._cache_file is None or not self._cache_file.is_file():
            return {}
        memory = {}
        for line in self._cache_file.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
                memory[record["key"]] = record["text"]
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a line cut by a crash
        return memory

    @staticmethod
    def _key(prompt: str, max_new_tokens: int) -> str:
        return hashlib.sha256(json.dumps([prompt, max_new_tokens, "greedy", "first line"]).encode()).hexdigest()

    def _prefix_cache(self, ids: tuple[int, ...]):
        """The KV cache of a prompt prefix (token ids), computed once: every prompt of a stage starts with the same
        instruction and few-shot examples (~1,200 tokens), which would otherwise be re-read for each prompt."""
        import torch

        if ids not in self._prefixes:
            with torch.no_grad():
                out = self.model(input_ids=torch.tensor([ids], device=self.model.device), use_cache=True)
            self._prefixes = {ids: out.cache}  # one stage at a time: keep the latest only
        return self._prefixes[ids]

    def _generate(self, prompts: list[str], max_new_tokens: int) -> list[str]:
        """Greedy continuations of a batch, each up to its first newline. The prompts' shared prefix (the
        instruction and examples, up to the last blank line they share) is read once and its KV cache reused: rows
        are [prefix, padding, suffix] with the padding masked, so every row sees the positions and tokens it would
        see alone."""
        import copy

        import torch

        pad = self.tokenizer.pad_token_id
        full = self.tokenizer(prompts)["input_ids"]
        text = os.path.commonprefix(prompts)
        text = text[: text.rfind("\n\n")] if "\n\n" in text else ""
        shared = self.tokenizer(text)["input_ids"] if text else []
        # the tokens every row starts with (a BPE merge across the cut may change the last ones); one left to read
        start = min(len(os.path.commonprefix([shared, row])) for row in full)
        start = min(start, min(len(row) for row in full) - 1)
        cached = (shared[:start], self._prefix_cache(tuple(shared[:start]))) if start >= 64 else None
        start = len(cached[0]) if cached else 0
        suffixes = [row[start:] for row in full]
        width = max(len(x) for x in suffixes)
        rows = [[pad] * (width - len(x)) + x for x in suffixes]  # [B, S]: padding before each suffix
        mask = [[0] * (width - len(x)) + [1] * len(x) for x in suffixes]
        kwargs = {}
        if cached:
            rows = [cached[0] + r for r in rows]  # [B, P + S]
            mask = [[1] * start + m for m in mask]
            kv = copy.deepcopy(cached[1])
            kv.batch_repeat_interleave(len(prompts))
            kwargs["cache"] = kv
        input_ids = torch.tensor(rows, device=self.model.device)
        attention_mask = torch.tensor(mask, device=self.model.device)
        with torch.no_grad():
            out = self.model.generate(input_ids=input_ids, attention_mask=attention_mask,
                                      max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad,
                                      stopping_criteria=self._stop, **kwargs)
        texts = self.tokenizer.batch_decode(out[:, input_ids.shape[1]:], skip_special_tokens=True)
        return [t.split("\n", 1)[0] for t in texts]

    def __call__(self, prompts: list[str], max_new_tokens: int = 48, desc: str = "generating") -> list[str]:
        """The completion of each prompt: the new text only, up to `max_new_tokens` tokens, stopped at the first
        newline (every prompt asks for one line)."""
        keys = [self._key(p, max_new_tokens) for p in prompts]
        todo = sorted({k: p for k, p in zip(keys, prompts) if k not in self._memory}.items(),
                      key=lambda item: len(item[1]))  # similar lengths share a batch: less padding
        batches = [todo[i : i + self.batch_size] for i in range(0, len(todo), self.batch_size)]
        for batch in tqdm(batches, desc=desc, disable=not self.progress or len(batches) < 2):
            texts = self._generate([p for _, p in batch], max_new_tokens)
            records = []
            for (key, _), text in zip(batch, texts):
                self._memory[key] = text
                records.append(json.dumps({"key": key, "text": self._memory[key]}))
            if self._cache_file is not None:
                self._cache_file.parent.mkdir(parents=True, exist_ok=True)
                with self._cache_file.open("a", encoding="utf-8") as handle:
                    handle.write("\n".join(records) + "\n")
        return [self._memory[k] for k in keys]


__all__ = ["CachedGenerator"]

"""FocusLLM's training samples (the official recipe, leezythu/FocusLLM `modeling_beacon.py` `prepare` and
`modeling_llama.py`): the loss is the next token after a local window, read through the candidates of the memory
before it.

- continuation: the local window is the end of the text, the memory everything before it; the target is the token
  that follows (the model learns to use the memory to continue);
- reconstruction: the memory is the whole text, the local window a copy of a random span of it; the target is the
  token that followed that span (the model learns to find and copy from the memory, which is what passkey retrieval
  needs: the paper's ablation gives 1.69 on passkey with continuation alone, 99.3 with both).

The official code draws one of the two per step (½ each, "due to memory constraints"); here every text gives both per
batch by default. The local window and the chunk size are drawn per sample and passed to the model as per-row
`local_window` and `chunk_size`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from ..configuration.focusllm import positive_int

TASKS = ("continuation", "reconstruction")


@dataclass
class FocusLLMCollator:
    """Turns examples {"input_ids": [T]} (long texts) into a FocusLLM training batch, left-padded: input_ids,
    attention_mask, labels (-100 except the targets), local_window [B], chunk_size [B].

    Args:
        local_window: (min, max) of the local window drawn per sample (official: 30 to 3070 for a 3072 window).
        chunk_sizes: the chunk sizes drawn from per sample (official: 64 to 2048).
        tasks: "continuation", "reconstruction", or both (each text then gives one sample of each).
        num_targets: tokens scored per sample (official 1); each condenses the memory with its own prompt.
        pad_token_id: the id left padding gets (masked out).
        seed: the draws' seed (None: Python's global random state).
    """

    local_window: tuple[int, int] = (30, 3070)
    chunk_sizes: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048)
    tasks: tuple[str, ...] = TASKS
    num_targets: int = 1
    pad_token_id: int = 0
    seed: int | None = None

    def __post_init__(self):
        low, high = self.local_window
        positive_int("local_window", low)
        if high < low:
            raise ValueError(f"local_window={self.local_window!r} must be (min, max) with min <= max")
        if not self.chunk_sizes:
            raise ValueError(f"chunk_sizes={self.chunk_sizes!r} must name at least one chunk size")
        for size in self.chunk_sizes:
            positive_int("chunk_sizes", size)
        if not self.tasks or any(t not in TASKS for t in self.tasks):
            raise ValueError(f"tasks={self.tasks!r} must be a non-empty subset of {TASKS}")
        positive_int("num_targets", self.num_targets)
        self._random = random.Random(self.seed)

    def sample(self, ids: list[int], task: str) -> tuple[list[int], int, int]:
        """(tokens, local window, chunk size) of one sample; its targets are the last num_targets tokens."""
        n = self.num_targets
        if len(ids) < self.local_window[0] + n + 1:
            raise ValueError(f"a text of {len(ids)} tokens is too short for local_window={self.local_window} and "
                             f"{n} target(s): it needs a memory of at least one token")
        window = self._random.randint(self.local_window[0], min(self.local_window[1], len(ids) - n - 1))
        chunk = self._random.choice(self.chunk_sizes)
        if task == "continuation":
            return ids, window, chunk
        start = self._random.randint(0, len(ids) - window - n)
        return ids + ids[start : start + window + n], window, chunk

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        samples = [self.sample(list(map(int, ex["input_ids"])), task) for ex in examples for task in self.tasks]
        width = max(len(s) for s, _, _ in samples)
        B = len(samples)
        input_ids = torch.full((B, width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros(B, width, dtype=torch.long)
        labels = torch.full((B, width), -100, dtype=torch.long)
        for b, (ids, _, _) in enumerate(samples):
            input_ids[b, width - len(ids):] = torch.tensor(ids)
            attention_mask[b, width - len(ids):] = 1
            labels[b, width - self.num_targets:] = input_ids[b, width - self.num_targets:]
        # the local window ends at the token before each target: the sample's last tokens are its targets
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels,
                "local_window": torch.tensor([w for _, w, _ in samples]),
                "chunk_size": torch.tensor([c for _, _, c in samples])}


__all__ = ["FocusLLMCollator"]

"""The `sequential-recommendation` pipeline: a user's history → the top-k next items with their scores.

    pipe = pipeline("sequential-recommendation", model=folder)     # import paperzoo first
    pipe(["50", "172", "133"], top_k=5)                            # one history of raw item keys -> one result
    pipe([[...], [...]])                                           # several histories (any lengths) -> one each
    pipe([12, 7, 99], from_keys=False)                             # item ids instead of keys

Each result is a list of {"item": key, "item_id": id, "score": s}, best first; the history's own items (all of them,
not only the last max_length the model reads) are left out unless `exclude_seen=False`. The processor (SequentialRecommendationProcessor: the item vocabulary and the window)
comes with the model folder.

This module imports only torch, transformers and the standard library (bundled as remote code by paperzoo.hub.export).
"""

from __future__ import annotations

import torch
from transformers import Pipeline

TASK = "sequential-recommendation"


class _Histories:
    """Histories that go through the pipeline as one batch (a list of lists would otherwise run one by one)."""

    def __init__(self, rows: list):
        self.rows = rows


class SequentialRecommendationPipeline(Pipeline):
    _load_tokenizer = False
    _load_image_processor = False
    _load_video_processor = False
    _load_processor = False
    _load_feature_extractor = True

    model_types = ("paperzoo_sasrec", "paperzoo_gru4rec", "paperzoo_caser", "paperzoo_fmlprec", "paperzoo_e4srec")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.feature_extractor is None:
            raise ValueError(f"the {TASK} pipeline needs the model's processor (its item vocabulary): pass "
                             "feature_extractor=... or load from a folder that has a preprocessor_config.json")

    def _sanitize_parameters(self, top_k: int | None = None, exclude_seen: bool | None = None,
                             from_keys: bool | None = None, **kwargs):
        if kwargs:
            raise ValueError(f"unexpected argument(s) {sorted(kwargs)} for the {TASK} pipeline")
        pre, post = {}, {}
        if from_keys is not None:
            pre["from_keys"] = from_keys
        if exclude_seen is not None:
            post["exclude_seen"] = exclude_seen
        if top_k is not None:
            if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k <= 0:
                raise ValueError(f"top_k={top_k!r} must be a positive integer")
            post["top_k"] = top_k
        return pre, {}, post

    def __call__(self, inputs, **kwargs):
        if not isinstance(inputs, (list, tuple)) or not inputs:
            raise ValueError("inputs must be a non-empty history (a list of items) or a list of histories")
        single = not isinstance(inputs[0], (list, tuple))
        results = super().__call__(_Histories([list(inputs)] if single else [list(r) for r in inputs]), **kwargs)
        return results[0] if single else results

    def preprocess(self, inputs, from_keys: bool = True):
        batch = self.feature_extractor(inputs.rows, from_keys=from_keys, return_tensors="pt")
        # the whole history (not only the window the model reads) is left out of the recommendations
        ids = [self.feature_extractor.item_ids(r) if from_keys else [int(x) for x in r] for r in inputs.rows]
        seen = torch.zeros(len(ids), max(len(r) for r in ids), dtype=torch.long)
        for i, r in enumerate(ids):
            seen[i, : len(r)] = torch.tensor(r)
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "seen": seen}

    def _forward(self, model_inputs):
        seen = model_inputs.pop("seen")
        return {"logits": self.model(**model_inputs).logits, "seen": seen}

    def postprocess(self, model_outputs, top_k: int = 10, exclude_seen: bool = True):
        logits = model_outputs["logits"].float()
        if exclude_seen:  # column 0 (padding) is −inf already
            logits = logits.scatter(1, model_outputs["seen"].to(logits.device), float("-inf"))
        top_k = min(top_k, logits.shape[1] - 1)
        scores, ids = logits.topk(top_k, dim=1)
        keys = self.feature_extractor.item_keys
        return [[{"item": keys[i - 1], "item_id": i, "score": s} for s, i in zip(row_s.tolist(), row_i.tolist())]
                for row_s, row_i in zip(scores, ids)]


__all__ = ["SequentialRecommendationPipeline"]

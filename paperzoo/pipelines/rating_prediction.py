"""The `rating-prediction` pipeline: (user, item) pairs → predicted ratings (KCF-PLM).

    pipe = pipeline("rating-prediction", model=folder)           # import paperzoo first
    pipe(("196", "242"))                                         # one pair -> {"user", "item", "rating"}
    pipe([("196", "242"), ("186", "302")], batch_size=64)        # many pairs -> one result each, in batches
    pipe({"user": "9999", "item": "242"}, user_texts={"9999": "Heat (1995): 5/5."})   # a cold-start user

The processor (KCFPLMProcessor: ids, documents, aspects, tokenizer) comes with the model folder. Unknown users or
items are predicted from their KG node and text (an empty document unless given), never an index error.

This module imports only torch, transformers and the standard library (bundled as remote code by paperzoo.hub.export).
"""

from __future__ import annotations

import torch
from transformers import Pipeline

TASK = "rating-prediction"


def _pair(value) -> tuple[str, str]:
    if isinstance(value, dict):
        missing = [k for k in ("user", "item") if k not in value]
        if missing:
            raise ValueError(f"a pair given as a dict needs the keys 'user' and 'item'; {value!r} lacks {missing}")
        return str(value["user"]), str(value["item"])
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return str(value[0]), str(value[1])
    raise ValueError(f"a pair is (user, item) or {{'user': .., 'item': ..}}; got {value!r}")


class _Pairs:
    """A batch of pairs that goes through preprocess as one unit."""

    def __init__(self, pairs: list[tuple[str, str]]):
        self.pairs = pairs


class RatingPredictionPipeline(Pipeline):
    _load_tokenizer = False
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = False
    _load_processor = True

    model_types = ("paperzoo_kcf_plm",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.processor is None:
            raise ValueError(f"the {TASK} pipeline needs the model's KCFPLMProcessor: pass processor=... or load "
                             f"from a folder saved with one")

    def _sanitize_parameters(self, user_texts: dict | None = None, item_texts: dict | None = None, **kwargs):
        if kwargs:
            raise ValueError(f"unexpected argument(s) {sorted(kwargs)} for the {TASK} pipeline")
        pre = {k: v for k, v in (("user_texts", user_texts), ("item_texts", item_texts)) if v is not None}
        return pre, {}, {}

    def __call__(self, inputs, batch_size: int = 64, **kwargs):
        single = isinstance(inputs, dict) or (isinstance(inputs, tuple) and len(inputs) == 2
                                              and not isinstance(inputs[0], (tuple, list, dict)))
        pairs = [_pair(inputs)] if single else [_pair(p) for p in inputs]
        if not pairs:
            raise ValueError("inputs must be a (user, item) pair or a non-empty list of pairs")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"batch_size={batch_size!r} must be a positive integer")
        chunks = [_Pairs(pairs[i : i + batch_size]) for i in range(0, len(pairs), batch_size)]
        results = [r for chunk in super().__call__(chunks, **kwargs) for r in chunk]
        return results[0] if single else results

    def preprocess(self, inputs: _Pairs, user_texts=None, item_texts=None):
        users, items = zip(*inputs.pairs)
        batch = self.processor(list(users), list(items), user_texts=user_texts, item_texts=item_texts)
        return {**batch, "pairs": inputs.pairs}

    def _forward(self, model_inputs):
        pairs = model_inputs.pop("pairs")
        return {"predictions": self.model(**model_inputs).predictions, "pairs": pairs}

    def postprocess(self, model_outputs):
        ratings = model_outputs["predictions"].to(torch.float32).tolist()
        return [{"user": u, "item": i, "rating": r} for (u, i), r in zip(model_outputs["pairs"], ratings)]


__all__ = ["RatingPredictionPipeline", "TASK"]

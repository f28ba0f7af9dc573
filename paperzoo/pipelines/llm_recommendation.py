"""The `llm-recommendation` pipeline: LlamaRec's two stages (paperzoo.llmrec) on a user's history of item keys.

    pipe = pipeline("llm-recommendation", model=sasrec_folder,         # a trained sequential recommender + processor
                    llm=None,                                          # any causal LM id / folder / (model, tokenizer);
                    titles="ml-100k")                                  # None: the offline SmolLM2-135M-Instruct
    pipe(["50", "172", "133"])                                         # one history (oldest first) -> one list
    pipe([[...], [...]], top_k=5)                                      # several histories -> one list each

Each result is the recommender's top `num_candidates` unseen items reranked by the LLM, best first:
{"item": key, "title": title, "score": log p(the candidate's letter), "retrieval_rank": its rank in the retrieval
(1 = the recommender's best)}. `titles` is a {item key: title} mapping, or a source for paperzoo.data.interactions.
load_item_titles (a recbole dataset name, a `.item` file, a CSV / Parquet file with item and title columns); every
item of the recommender's vocabulary needs one. `pipe.reranker.prompt_format` says whether the LLM's chat template
("chat") or a plain prompt ("plain": the model has no chat template, logged once) was used.
"""

from __future__ import annotations

import torch
from transformers import Pipeline

from ..llmrec.reranker import LLMReranker, item_titles, retrieve
from .sequential_recommendation import _Histories

TASK = "llm-recommendation"


class LLMRecommendationPipeline(Pipeline):
    _load_tokenizer = False
    _load_image_processor = False
    _load_video_processor = False
    _load_processor = False
    _load_feature_extractor = True

    def __init__(self, *args, llm=None, titles=None, chat_template: str = "auto", max_history: int = 20,
                 num_candidates: int = 20, item_noun: str = "movie", llm_batch_size: int = 8, **kwargs):
        super().__init__(*args, **kwargs)
        if self.feature_extractor is None:
            raise ValueError(f"the {TASK} pipeline needs the recommender's processor (its item vocabulary): pass "
                             "feature_extractor=... or load from a folder that has a preprocessor_config.json")
        if titles is None:
            raise ValueError(f"the {TASK} pipeline needs titles=...: a {{item key: title}} mapping, or a recbole "
                             "dataset name / .item / CSV / Parquet file (paperzoo.data.interactions.load_item_titles)")
        if not hasattr(titles, "keys"):
            from ..data.interactions import load_item_titles

            titles = load_item_titles(titles)
        self.titles = item_titles(self.feature_extractor, {str(k): v for k, v in titles.items()})  # by item id
        self.reranker = LLMReranker(llm, chat_template=chat_template, max_history=max_history,
                                    num_candidates=num_candidates, item_noun=item_noun, batch_size=llm_batch_size)

    def _sanitize_parameters(self, top_k: int | None = None, **kwargs):
        if kwargs:
            raise ValueError(f"unexpected argument(s) {sorted(kwargs)} for the {TASK} pipeline")
        post = {}
        if top_k is not None:
            if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k <= 0:
                raise ValueError(f"top_k={top_k!r} must be a positive integer")
            post["top_k"] = top_k
        return {}, {}, post

    def __call__(self, inputs, **kwargs):
        if not isinstance(inputs, (list, tuple)) or not inputs:
            raise ValueError("inputs must be a non-empty history (a list of item keys) or a list of histories")
        single = not isinstance(inputs[0], (list, tuple))
        results = super().__call__(_Histories([list(inputs)] if single else [list(r) for r in inputs]), **kwargs)
        return results[0] if single else results

    def preprocess(self, inputs):
        for i, row in enumerate(inputs.rows):
            if not row:
                raise ValueError(f"history {i} is empty: a recommendation needs at least one item")
        return {"histories": [self.feature_extractor.item_ids(row) for row in inputs.rows]}

    def _forward(self, model_inputs):
        histories = model_inputs["histories"]
        _, candidates = retrieve(self.model, self.feature_extractor, histories, self.reranker.num_candidates)
        candidates = candidates.tolist()  # [B, k] item ids, the recommender's order
        ranked = self.reranker.rerank([[self.titles[i] for i in h] for h in histories],
                                      [[self.titles[i] for i in row] for row in candidates])
        return {"candidates": candidates, "ranked": ranked}

    def postprocess(self, model_outputs, top_k: int | None = None):
        keys = self.feature_extractor.item_keys
        out = []
        for row, ranked in zip(model_outputs["candidates"], model_outputs["ranked"]):
            out.append([{"item": keys[row[i] - 1], "title": self.titles[row[i]], "score": score,
                         "retrieval_rank": i + 1} for i, score in ranked[:top_k]])
        return out


__all__ = ["LLMRecommendationPipeline", "TASK"]

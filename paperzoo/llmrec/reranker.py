"""LlamaRec-style two-stage recommendation (Yue et al., "LlamaRec: Two-Stage Recommendation using Large Language Models
for Ranking", arXiv 2311.02089), the LLM baseline of the CE/SCE papers (Xu et al., arXiv 2402.06216 / 2408.14238):

1. retrieval: a trained sequential recommender (SASRec) scores every item after the user's history; its top
   `num_candidates` unseen items are the candidates;
2. ranking: the LLM reads the user's history as item titles (most recent last, the last `max_history`) and the
   candidates' titles with index letters A, B, ... and is asked for one letter. The verbalizer scores candidate i by
   log p(letter_i | prompt): every letter is a single token, so one forward per user scores all candidates
   (paperzoo.llm.option_log_likelihoods, batched across users, left-padded with explicit positions).

    reranker = LLMReranker()                            # paperzoo's offline SmolLM2-135M-Instruct, or any causal LM
    reranker.rerank([["Toy Story (1995)", ...]], [["Heat (1995)", "Fargo (1996)", ...]])
    # [[(1, -0.41), (0, -1.73), ...]]: (candidate index, log-likelihood of its letter), best first

`evaluate_reranker` measures the two stages under the sequential recommenders' protocol and says how much of the
result the retrieval allows: the retrieval recall (a target outside the candidates is a miss whatever the LLM does),
the retriever's own metrics on the same users, and the expected metrics of a random order of the candidates.
Prompts are data (prompts.json in this package).
"""

from __future__ import annotations

import json
import math
import string
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources

from ..llm import CHAT_TEMPLATE_CHOICES, load_causal_lm, option_log_likelihoods, render_prompt

LETTERS = string.ascii_uppercase  # candidates are labelled A..Z: at most 26


def load_prompts() -> dict:
    return json.loads(resources.files(__package__).joinpath("prompts.json").read_text(encoding="utf-8"))


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name}={value!r} must be a positive integer")
    return value


class LLMReranker:
    """The LLM ranking stage: candidates' titles in, their letters' log-likelihoods out.

    Args:
        llm: a Hub id or folder, a model object (with `tokenizer=`), a (model, tokenizer) pair, or None (paperzoo's
            offline SmolLM2-135M-Instruct).
        chat_template: "auto" (the model's chat template where it has one, else a plain prompt, logged once),
            "always" (ValueError without one) or "never". `prompt_format` says which was used: "chat" or "plain".
        max_history: the most recent history titles the prompt shows.
        num_candidates: how many retrieved items the LLM ranks (≤ 26, one letter each); LlamaRec uses 20.
        item_noun: what the items are called in the prompt ("movie" for MovieLens).
        batch_size: prompts per forward.
    """

    def __init__(self, llm=None, tokenizer=None, chat_template: str = "auto", max_history: int = 20,
                 num_candidates: int = 20, item_noun: str = "movie", batch_size: int = 8):
        if chat_template not in CHAT_TEMPLATE_CHOICES:
            raise ValueError(f"chat_template={chat_template!r} is not one of {CHAT_TEMPLATE_CHOICES}")
        self.max_history = _positive_int("max_history", max_history)
        self.num_candidates = _positive_int("num_candidates", num_candidates)
        if num_candidates > len(LETTERS):
            raise ValueError(f"num_candidates={num_candidates} > {len(LETTERS)}: each candidate is one letter A..Z")
        self.batch_size = _positive_int("batch_size", batch_size)
        if not isinstance(item_noun, str) or not item_noun.strip():
            raise ValueError(f"item_noun={item_noun!r} must be a non-empty word such as 'movie'")
        if isinstance(llm, tuple):
            llm, tokenizer = llm
        self.model, self.tokenizer = load_causal_lm(llm, tokenizer)
        self.chat_template, self.item_noun = chat_template, item_noun
        self.template = load_prompts()["rerank"]
        has_template = bool(getattr(self.tokenizer, "chat_template", None))
        if chat_template == "always" and not has_template:
            raise ValueError(f"chat_template='always' but the tokenizer {type(self.tokenizer).__name__} has no chat "
                             "template (use 'auto' to fall back to a plain prompt)")
        self.prompt_format = "chat" if has_template and chat_template != "never" else "plain"
        if not has_template and chat_template == "auto":
            from transformers.utils import logging

            logging.get_logger(__name__).warning_once(
                f"the LLM's tokenizer ({type(self.tokenizer).__name__}) has no chat template: the reranking prompt is "
                "plain text followed by 'Answer:' (prompt_format='plain')")

    def prompt(self, history: Sequence[str], candidates: Sequence[str]) -> str:
        """The text the LLM reads: the last `max_history` history titles, the candidates with their letters, and
        the answer prefix (in the chat template's assistant turn, or after the plain prompt)."""
        t = self.template
        if not history:
            raise ValueError("the history is empty: the reranker needs at least one title")
        if not candidates or len(candidates) > len(LETTERS):
            raise ValueError(f"{len(candidates)} candidates: the reranker takes 1..{len(LETTERS)}")
        for role, titles in (("history", history), ("candidate", candidates)):
            bad = [i for i, title in enumerate(titles) if not isinstance(title, str) or not title.strip()]
            if bad:
                raise ValueError(f"{role} title {bad[0]} is {titles[bad[0]]!r}: every item needs a non-empty title")
        lines = [t["instruction"].format(item=self.item_noun), "", t["history_header"]]
        lines += [t["history_line"].format(title=title) for title in list(history)[-self.max_history:]]
        lines += ["", t["candidates_header"]]
        lines += [t["candidate_line"].format(letter=LETTERS[i], title=title) for i, title in enumerate(candidates)]
        text, _ = render_prompt(self.tokenizer, "\n".join(lines), t["answer_prefix"], self.chat_template)
        return text

    def options(self, count: int) -> list[str]:
        return [self.template["option"].format(letter=LETTERS[i]) for i in range(count)]

    def score(self, histories: Sequence[Sequence[str]], candidates: Sequence[Sequence[str]],
              progress: bool = False) -> list[list[float]]:
        """log p(letter of candidate i | prompt) for every candidate of every user, batched across users."""
        if len(histories) != len(candidates):
            raise ValueError(f"{len(histories)} histories for {len(candidates)} candidate lists")
        prompts = [self.prompt(h, c) for h, c in zip(histories, candidates)]
        return option_log_likelihoods(self.model, self.tokenizer, prompts, [self.options(len(c)) for c in candidates],
                                      batch_size=self.batch_size, progress=progress, desc="reranking")

    def rerank(self, histories: Sequence[Sequence[str]], candidates: Sequence[Sequence[str]],
               progress: bool = False) -> list[list[tuple[int, float]]]:
        """Per user, (candidate index, score) best first; equal scores keep the retrieval order."""
        return [sorted(enumerate(row), key=lambda pair: -pair[1])
                for row in self.score(histories, candidates, progress)]


# ----------------------------------------------------------------------------------------------------------------------
# Evaluation under the sequential recommenders' protocol


@dataclass
class RerankEvaluation:
    """Metrics of the two stages on the same users (keys hr@k, ndcg@k, mrr@k)."""

    users: int
    num_candidates: int
    retrieval_recall: float  # fraction of targets among the candidates: the most any ranking of them can hit
    reranked: dict[str, float]  # the final list: the LLM's order of the candidates, then the retriever's order
    retriever: dict[str, float]  # the retriever's own full ranking
    random_order: dict[str, float]  # expected metrics of the candidates in a uniformly random order
    prompt_format: str
    seconds_per_user: float  # the LLM stage
    target_ranks: list[int] = field(repr=False, default_factory=list)  # final rank of each user's target


def item_titles(processor, titles: Mapping[str, str]) -> list[str | None]:
    """Titles by item id (index 0, the padding, is None); ValueError naming the first item without a title."""
    missing = [key for key in processor.item_keys if key not in titles]
    if missing:
        raise ValueError(f"{len(missing)} of the {processor.num_items} items have no title, e.g. item {missing[0]!r}")
    return [None, *(titles[key] for key in processor.item_keys)]


def retrieve(recommender, processor, histories: Sequence[Sequence[int]], num_candidates: int, batch_size: int = 256):
    """(the recommender's scores [B, N + 1], candidate ids [B, k]: its best k items outside each whole history)."""
    import torch

    scores = []
    device = getattr(recommender, "device", None)  # a PreTrainedModel's; the batch follows it
    with torch.no_grad():
        for start in range(0, len(histories), batch_size):
            batch = processor(list(histories[start:start + batch_size]), return_tensors="pt")
            scores.append(recommender(**(batch.to(device) if device is not None else batch)).logits.float().cpu())
    scores = torch.cat(scores)  # [B, N + 1]
    unseen = scores.clone()
    for row, history in enumerate(histories):  # the whole history, not only the window the model reads
        unseen[row, list(history)] = float("-inf")
    k = min(num_candidates, scores.shape[1] - 1)
    return scores, unseen.topk(k, dim=1).indices


def evaluate_reranker(reranker: LLMReranker, recommender, processor, rows, titles: Mapping[str, str],
                      users: Sequence[int] | None = None, ks=None, progress: bool = False) -> RerankEvaluation:
    """Rerank the recommender's top `reranker.num_candidates` for the evaluation rows (paperzoo.processors.seqrec
    EvaluationRows; `users`: a subset of their indices) and score the final list by full ranking.

    The final list is the candidates in the LLM's order followed by every other unseen item in the retriever's
    order, so a target outside the candidates keeps its retriever rank (beyond the candidates) and a target among
    them gets 1 + the number of other candidates the LLM scores at least as high (ties against the target, as in
    paperzoo.metrics.ranking). `ks`: the cut-offs of HR/NDCG/MRR@k (default 1, 5, 10)."""
    import torch

    from ..metrics.ranking import DEFAULT_KS, metrics_from_ranks, target_ranks

    ks = DEFAULT_KS if ks is None else ks

    users = list(range(len(rows.targets))) if users is None else list(users)
    if not users:
        raise ValueError("no users to evaluate")
    by_id = item_titles(processor, titles)
    histories = [rows.histories[u] for u in users]
    targets = torch.tensor([rows.targets[u] for u in users])
    scores, candidates = retrieve(recommender, processor, histories, reranker.num_candidates)
    retriever_ranks = target_ranks(scores, targets, seen=histories)  # [B], the sequential recommenders' protocol
    start = time.perf_counter()
    llm_scores = torch.tensor(reranker.score([[by_id[i] for i in h] for h in histories],
                                             [[by_id[i] for i in row] for row in candidates.tolist()], progress))
    seconds = time.perf_counter() - start
    k = candidates.shape[1]
    hit = candidates == targets[:, None]  # [B, k]
    found = hit.any(1)  # [B]
    target_llm = torch.where(hit, llm_scores, 0.0).sum(1, keepdim=True)  # [B, 1]: the target's, where it is one
    in_candidates = 1 + ((llm_scores >= target_llm) & ~hit).sum(1)  # [B]
    final = torch.where(found, in_candidates, retriever_ranks.clamp(min=k + 1))  # [B]
    # a random order puts a found target at each of the k places with probability 1/k
    random_order = [metrics_from_ranks(torch.where(found, torch.full_like(final, r), final), ks)
                    for r in range(1, k + 1)]
    return RerankEvaluation(
        users=len(users), num_candidates=k, retrieval_recall=float(found.double().mean()),
        reranked=metrics_from_ranks(final, ks), retriever=metrics_from_ranks(retriever_ranks, ks),
        random_order={key: math.fsum(m[key] for m in random_order) / k for key in random_order[0]},
        prompt_format=reranker.prompt_format, seconds_per_user=seconds / len(users), target_ranks=final.tolist())


__all__ = ["LETTERS", "LLMReranker", "RerankEvaluation", "evaluate_reranker", "item_titles", "load_prompts",
           "retrieve"]

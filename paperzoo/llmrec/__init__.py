"""LLM-based recommendation, the baselines of the CE/SCE papers (Xu et al., arXiv 2402.06216 / 2408.14238, §3.5 of
the notes): LlamaRec's two stages (a sequential recommender retrieves candidates, an LLM ranks them from the user's
history of item titles: `LLMReranker`, `evaluate_reranker`). E4SRec, the LLM as the sequence encoder over item ids,
is an architecture: paperzoo.modeling.e4srec, trained as in paperzoo.modeling.e4srec_training."""

from .reranker import LETTERS, LLMReranker, RerankEvaluation, evaluate_reranker, item_titles, load_prompts, retrieve

__all__ = ["LETTERS", "LLMReranker", "RerankEvaluation", "evaluate_reranker", "item_titles", "load_prompts",
           "retrieve"]

"""LLMReranker: the prompt shows the history's last titles and every candidate with its letter; the scores are
log p(letter | prompt) as a plain one-row forward computes them, batched or alone; the prompt format is stated."""

from __future__ import annotations

import logging

import pytest
import torch

from paperzoo.llmrec import LETTERS, LLMReranker

from .conftest import TITLES

TITLE_LIST = list(TITLES.values())
HISTORIES = [TITLE_LIST[:7], TITLE_LIST[10:12], TITLE_LIST[3:4]]
CANDIDATES = [TITLE_LIST[20:26], TITLE_LIST[12:20], TITLE_LIST[25:28]]


def reference(model, tokenizer, prompt: str, option: str) -> float:
    """Σ log p(token | everything before it) over the tokens of prompt + option after the prompt's, one row, no
    padding, no batching."""
    ids = tokenizer(prompt)["input_ids"]
    full = tokenizer(prompt + option)["input_ids"]
    assert full[: len(ids)] == ids  # the prompt ends at a token boundary ("Answer:")
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([full])).logits[0].double(), -1)
    return sum(float(logp[p - 1, full[p]]) for p in range(len(ids), len(full)))


def test_the_prompt_shows_the_last_history_titles_in_order_and_every_candidate_with_its_letter(llm):
    reranker = LLMReranker(llm, max_history=4)
    history, candidates = TITLE_LIST[:7], TITLE_LIST[20:26]
    text = reranker.prompt(history, candidates)
    shown = [t for t in TITLE_LIST if f"- {t}\n" in text]
    assert shown == history[-4:]  # the 4 most recent, oldest first, the older ones left out
    assert text.index(history[-4]) < text.index(history[-1])
    for letter, title in zip(LETTERS, candidates):
        assert f"{letter}. {title}\n" in text + "\n"
    assert f"{LETTERS[len(candidates)]}. " not in text  # no letter beyond the candidates
    assert text.endswith("Answer:")


# " A" is two tokens for the tiny tokenizer (a row per candidate), "A" one (one forward scores every candidate, the
# verbalizer path SmolLM2 takes with " A")
@pytest.mark.parametrize("option", [" {letter}", "{letter}"])
def test_scores_equal_a_plain_forward_batched_or_alone(llm, option):
    model, tokenizer = llm
    batched, alone = LLMReranker(llm, max_history=5, batch_size=3), LLMReranker(llm, max_history=5, batch_size=1)
    batched.template = alone.template = {**alone.template, "option": option}
    batched = batched.score(HISTORIES, CANDIDATES)
    reranker_alone = [alone.score([h], [c])[0] for h, c in zip(HISTORIES, CANDIDATES)]
    expected = [[reference(model, tokenizer, alone.prompt(h, c), option.format(letter=LETTERS[i]))
                 for i in range(len(c))] for h, c in zip(HISTORIES, CANDIDATES)]
    assert [len(s) for s in batched] == [len(c) for c in CANDIDATES]
    assert sum(batched, []) == pytest.approx(sum(expected, []), abs=1e-9)
    assert sum(reranker_alone, []) == pytest.approx(sum(expected, []), abs=1e-9)
    assert len({round(s, 6) for s in sum(expected, [])}) > len(CANDIDATES)  # the scores differ: not a constant


def test_rerank_sorts_by_score_and_keeps_the_retrieval_order_on_ties(llm):
    reranker = LLMReranker(llm)
    scores = reranker.score(HISTORIES, CANDIDATES)
    for row, ranked in zip(scores, reranker.rerank(HISTORIES, CANDIDATES)):
        assert sorted(i for i, _ in ranked) == list(range(len(row)))
        assert [s for _, s in ranked] == sorted(row, reverse=True)
    reranker.score = lambda histories, candidates, progress=False: [[0.5, 1.0, 0.5, 1.0]]
    assert [i for i, _ in reranker.rerank(HISTORIES[:1], [TITLE_LIST[:4]])[0]] == [1, 3, 0, 2]


def test_without_a_chat_template_the_prompt_is_plain_and_says_so(llm, caplog):
    model, tokenizer = llm
    assert not getattr(tokenizer, "chat_template", None)
    from transformers.utils import logging as hf_logging

    hf_logging.get_logger("paperzoo.llmrec.reranker").warning_once.cache_clear()
    with caplog.at_level(logging.WARNING):
        plain = LLMReranker(llm)
        LLMReranker(llm)
    assert plain.prompt_format == "plain"
    assert [r.getMessage() for r in caplog.records].count(
        "the LLM's tokenizer (TokenizersBackend) has no chat template: the reranking prompt is plain text followed "
        "by 'Answer:' (prompt_format='plain')") == 1
    assert plain.prompt(["a"], ["b"]).startswith("Given a user's movie history")
    with pytest.raises(ValueError, match="chat_template='always' but the tokenizer"):
        LLMReranker(llm, chat_template="always")
    tokenizer.chat_template = "{% for m in messages %}<|user|>{{ m['content'] }}\n{% endfor %}<|assistant|>"
    try:
        chat = LLMReranker(llm)
        assert chat.prompt_format == "chat"
        assert chat.prompt(["a"], ["b"]).startswith("<|user|>Given a user's movie history")
        assert chat.prompt(["a"], ["b"]).endswith("<|assistant|>Answer:")
        assert LLMReranker(llm, chat_template="never").prompt_format == "plain"
    finally:
        tokenizer.chat_template = None


def test_bad_arguments_are_value_errors_naming_them(llm):
    for kwargs, message in (({"num_candidates": 27}, "num_candidates=27"), ({"max_history": 0}, "max_history=0"),
                            ({"chat_template": "sometimes"}, "chat_template='sometimes'"),
                            ({"batch_size": -1}, "batch_size=-1"), ({"item_noun": " "}, "item_noun=' '")):
        with pytest.raises(ValueError, match=message):
            LLMReranker(llm, **kwargs)
    reranker = LLMReranker(llm)
    with pytest.raises(ValueError, match="the history is empty"):
        reranker.prompt([], ["b"])
    with pytest.raises(ValueError, match="candidate title 1 is ''"):
        reranker.prompt(["a"], ["b", ""])
    with pytest.raises(ValueError, match="2 histories for 1 candidate lists"):
        reranker.score([["a"], ["b"]], [["c"]])

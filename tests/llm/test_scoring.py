"""paperzoo.llm: option log-likelihoods against a plain one-row forward, in float64, batched and alone."""

from __future__ import annotations

import pytest
import torch

from paperzoo.llm import load_causal_lm, option_log_likelihoods, render_prompt

from ..tiny_llm import tiny_causal_lm


@pytest.fixture(scope="module")
def llm():
    model, tokenizer = tiny_causal_lm()
    return load_causal_lm(model.double(), tokenizer)


def reference(model, tokenizer, prompt: str, option: str) -> float:
    """Σ log p(token | everything before it) over the tokens of prompt + option after the prompt's, one row."""
    ids = tokenizer(prompt)["input_ids"]
    full = tokenizer(prompt + option)["input_ids"]
    assert full[: len(ids)] == ids  # these prompts end at a token boundary
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([full])).logits[0], -1)
    return sum(float(logp[p - 1, full[p]]) for p in range(len(ids), len(full)))


PROMPTS = ["question: What can viruses cause?\nanswer:", "sparql: SELECT",
           "Convert the SPARQL queries to natural language questions.\nAnswer the following questions:\nanswer:"]


@pytest.mark.parametrize("options", [[" A", " B", " C"], [" disease or syndrome", " virus", " causes it"]])
def test_scores_match_a_full_forward_batched_or_alone(llm, options):
    model, tokenizer = llm
    batched = option_log_likelihoods(model, tokenizer, PROMPTS, options, batch_size=4)
    alone = [option_log_likelihoods(model, tokenizer, [p], options, batch_size=1)[0] for p in PROMPTS]
    expected = [[reference(model, tokenizer, p, o) for o in options] for p in PROMPTS]
    assert sum(batched, []) == pytest.approx(sum(expected, []), abs=1e-9)
    assert sum(alone, []) == pytest.approx(sum(expected, []), abs=1e-9)


def test_options_per_prompt_and_bad_input(llm):
    model, tokenizer = llm
    scores = option_log_likelihoods(model, tokenizer, PROMPTS[:2], [[" A"], [" B", " virus"]])
    assert [len(s) for s in scores] == [1, 2]
    with pytest.raises(ValueError, match="2 option lists for 3 prompts"):
        option_log_likelihoods(model, tokenizer, PROMPTS, [[" A"], [" B"]])
    with pytest.raises(ValueError, match="prompt 0 has no options"):
        option_log_likelihoods(model, tokenizer, PROMPTS[:1], [[]])
    with pytest.raises(ValueError, match="batch_size=0"):
        option_log_likelihoods(model, tokenizer, PROMPTS, [" A"], batch_size=0)
    with pytest.raises(ValueError, match="needs its tokenizer"):
        load_causal_lm(model)


def test_render_prompt_without_a_chat_template_is_plain_and_says_so(llm):
    _, tokenizer = llm
    assert not getattr(tokenizer, "chat_template", None)
    assert render_prompt(tokenizer, "Which class?", "Answer:") == ("Which class?\nAnswer:", "plain")
    with pytest.raises(ValueError, match="has no chat template"):
        render_prompt(tokenizer, "Which class?", chat_template="always")
    with pytest.raises(ValueError, match="chat_template='sometimes'"):
        render_prompt(tokenizer, "Which class?", chat_template="sometimes")
    tokenizer.chat_template = "{% for m in messages %}<|user|>{{ m['content'] }}\n{% endfor %}<|assistant|>"
    try:
        assert render_prompt(tokenizer, "Which class?", "Answer:") == ("<|user|>Which class?\n<|assistant|>Answer:",
                                                                       "chat")
        assert render_prompt(tokenizer, "Which class?", "Answer:", "never")[1] == "plain"
    finally:
        tokenizer.chat_template = None


def test_a_shared_prefix_is_read_once_with_the_same_scores(llm):
    model, tokenizer = llm
    shared = "Convert the SPARQL queries to natural language questions.\n" * 8  # > 64 tokens every prompt starts with
    prompts = [shared + p for p in PROMPTS]
    assert len(tokenizer(shared)["input_ids"]) >= 64
    calls = []
    hook = model.register_forward_pre_hook(lambda m, a, kw: calls.append(kw["input_ids"].shape if "input_ids" in kw else None), with_kwargs=True)
    try:
        for options in ([" A", " B"], [" disease or syndrome", " virus"]):
            calls.clear()
            reused = option_log_likelihoods(model, tokenizer, prompts, options, batch_size=2)
            calls[:] = [c for c in calls if c is not None]
            assert calls[0][0] == 1 and calls[0][1] >= 64  # the prefix, once
            assert all(shape[1] < calls[0][1] for shape in calls[1:])  # then the suffixes only
            plain = option_log_likelihoods(model, tokenizer, prompts, options, batch_size=2, share_prefix=False)
            expected = [[reference(model, tokenizer, p, o) for o in options] for p in prompts]
            assert sum(reused, []) == pytest.approx(sum(expected, []), abs=1e-9)
            assert sum(plain, []) == pytest.approx(sum(expected, []), abs=1e-9)
    finally:
        hook.remove()

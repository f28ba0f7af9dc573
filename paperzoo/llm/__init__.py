"""What every LLM pipeline of paperzoo shares: loading any Hugging Face causal LM (None: the offline
SmolLM2-135M-Instruct), rendering a prompt with or without the model's chat template, scoring answer options by their
log-likelihood (batched), and greedy generation (`generation.CachedGenerator`).

    model, tokenizer = load_causal_lm("HuggingFaceTB/SmolLM2-360M-Instruct")   # or None, a folder, an object
    text, form = render_prompt(tokenizer, "Which class ...?", answer_prefix="Answer:")  # form: "chat" | "plain"
    option_log_likelihoods(model, tokenizer, [text], [[" A", " B"]])           # [[log p(" A"), log p(" B")]]

Option scoring is the multiple-choice evaluation of the LLM papers (and LlamaRec's verbalizer): log p(option | prompt)
summed over the option's tokens, with the option tokenised in context (as the model would have produced it). Rows
are left-padded with explicit positions, so a batch gives each row the scores it gets alone (tested).
"""

from __future__ import annotations

from pathlib import Path

CHAT_TEMPLATE_CHOICES = ("auto", "always", "never")


def load_causal_lm(model=None, tokenizer=None, dtype=None):
    """(model, tokenizer) in eval mode from None (the offline SmolLM2-135M-Instruct, paperzoo.data.local_llm), a Hub id
    or local folder, or a model object with its `tokenizer`. The tokenizer pads on the left with EOS where it has no
    pad token (the padding is masked)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if model is None:
        from ..data import local_llm

        model, tokenizer = local_llm(dtype=dtype)
    elif isinstance(model, (str, Path)):
        tokenizer = tokenizer or AutoTokenizer.from_pretrained(model)
        model = AutoModelForCausalLM.from_pretrained(model, dtype=dtype or "auto").eval()
    elif tokenizer is None:
        raise ValueError(f"a model object ({type(model).__name__}) needs its tokenizer: pass tokenizer=...")
    if not callable(getattr(tokenizer, "__call__", None)) or not hasattr(tokenizer, "decode"):
        raise ValueError(f"tokenizer={type(tokenizer).__name__} is not a tokenizer")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return model.eval(), tokenizer


def render_prompt(tokenizer, prompt: str, answer_prefix: str = "", chat_template: str = "auto") -> tuple[str, str]:
    """(text the model reads, "chat" | "plain"). With the model's chat template (`chat_template="auto"` where the
    tokenizer has one, or "always"), the prompt is the user's message and `answer_prefix` starts the assistant's
    turn; otherwise (no template, or "never") the prompt is read as plain text followed by `answer_prefix` on its
    own line."""
    if chat_template not in CHAT_TEMPLATE_CHOICES:
        raise ValueError(f"chat_template={chat_template!r} is not one of {CHAT_TEMPLATE_CHOICES}")
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if chat_template == "always" and not has_template:
        raise ValueError(f"chat_template='always' but the tokenizer {type(tokenizer).__name__} has no chat template "
                         "(use 'auto' to fall back to a plain prompt)")
    if has_template and chat_template != "never":
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
        return text + answer_prefix, "chat"
    return prompt.rstrip("\n") + "\n" + answer_prefix, "plain"


def _option_tokens(tokenizer, prompt_ids: list[int], prompt: str, option: str) -> list[int]:
    """The tokens of `option` as they follow `prompt`: the tail of tokenize(prompt + option) when that starts with the
    prompt's own tokens, else the option tokenised alone (a merge across the boundary)."""
    both = tokenizer(prompt + option, add_special_tokens=False)["input_ids"]
    if both[: len(prompt_ids)] == prompt_ids and len(both) > len(prompt_ids):
        return both[len(prompt_ids):]
    alone = tokenizer(option, add_special_tokens=False)["input_ids"]
    if not alone:
        raise ValueError(f"option {option!r} has no tokens")
    return alone


def option_log_likelihoods(model, tokenizer, prompts: list[str], options, batch_size: int = 8,
                           progress: bool = False, desc: str = "scoring", share_prefix: bool = True
                           ) -> list[list[float]]:
    """log p(option | prompt), summed over the option's tokens, for every option of every prompt.

    `options`: one list of strings shared by all prompts, or one list per prompt. Where every option of a prompt is
    a single token, one forward of the prompt scores them all (the next-token distribution); otherwise each
    (prompt, option) pair is a row. Batches of `batch_size` rows, left-padded, positions counted from each row's
    first real token. `share_prefix`: the tokens every prompt starts with (a few-shot prompt's instruction and
    examples) are read once and their KV cache reused by every batch (rows are [prefix, padding, suffix], the padding
    masked), when there are at least 64 of them."""
    import copy
    import inspect
    import os

    import torch
    from tqdm.auto import tqdm

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size={batch_size!r} must be a positive integer")
    if options and isinstance(options[0], str):
        options = [list(options)] * len(prompts)
    if len(options) != len(prompts):
        raise ValueError(f"{len(options)} option lists for {len(prompts)} prompts")
    rows = []  # (prompt index, [(option index, option tokens)], prompt tokens)
    for i, (prompt, choices) in enumerate(zip(prompts, options)):
        if not choices:
            raise ValueError(f"prompt {i} has no options")
        ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
        plain = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        tokens = [_option_tokens(tokenizer, plain, prompt, o) for o in choices]
        if all(len(t) == 1 for t in tokens):
            rows.append((i, list(enumerate(tokens)), ids))
        else:
            rows += [(i, [(j, t)], ids) for j, t in enumerate(tokens)]
    scores = [[0.0] * len(c) for c in options]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = next(model.parameters()).device
    # the shared prefix, one token short of the shortest row (a row must read at least one token of its own)
    prefix = os.path.commonprefix([r[2] for r in rows])[: min(len(r[2]) for r in rows) - 1] if share_prefix else []
    P = len(prefix) if len(prefix) >= 64 else 0
    takes_keep = "logits_to_keep" in inspect.signature(model.forward).parameters
    if P:
        with torch.no_grad():
            prefix_cache = model(input_ids=torch.tensor([prefix], device=device), use_cache=True).cache
    order = sorted(range(len(rows)), key=lambda r: len(rows[r][2]) + len(rows[r][1][0][1]))  # less padding
    batches = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    with torch.no_grad():
        for batch in tqdm(batches, desc=desc, disable=not progress or len(batches) < 2):
            # a single-token row reads the prompt only; a multi-token row reads prompt + option[:-1]
            seqs = [rows[r][2][P:] + (rows[r][1][0][1][:-1] if len(rows[r][1]) == 1 else []) for r in batch]
            width = max(len(s) for s in seqs)
            input_ids = torch.tensor([[pad] * (width - len(s)) + s for s in seqs], device=device)  # [b, W]
            mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs], device=device)
            positions = P + (mask.cumsum(1) - 1).clamp(min=0)
            kwargs = {}
            if P:
                kwargs["cache"] = copy.deepcopy(prefix_cache)
                kwargs["cache"].batch_repeat_interleave(len(batch))
                mask = torch.cat([mask.new_ones(len(batch), P), mask], 1)  # [b, P + W]
            # only the last `keep` positions predict option tokens: the LM head and the log-softmax skip the rest
            keep = max(len(rows[r][1][0][1]) if len(rows[r][1]) == 1 else 1 for r in batch)
            if takes_keep:
                kwargs["logits_to_keep"] = keep
            logits = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, **kwargs).logits
            logits = logits[:, -keep:]
            logp = torch.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), -1)  # [b, keep, V]
            for b, r in enumerate(batch):
                i, choices, prompt_ids = rows[r]
                if len(choices) > 1 or len(choices[0][1]) == 1:  # next-token scores at the last position
                    for j, t in choices:
                        scores[i][j] = float(logp[b, -1, t[0]])
                else:  # positions W - n .. W - 1 predict the option's n tokens
                    j, t = choices[0]
                    n = len(t)
                    steps = logp[b, keep - n :]  # [n, V]: position W-n predicts t[0], ..., W-1 predicts t[-1]
                    scores[i][j] = float(steps.gather(1, torch.tensor(t, device=device)[:, None]).sum())
    return scores


__all__ = ["CHAT_TEMPLATE_CHOICES", "load_causal_lm", "option_log_likelihoods", "render_prompt"]

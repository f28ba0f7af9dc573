"""FocusLLM's building blocks on unchanged transformers models (tiny random Llama with GQA, Qwen2 with q/k/v biases):
the batched chunk pass equals one pass per chunk, moved candidate keys equal keys computed at the target position,
and a loss through the candidate prefix trains the candidate projections only."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from paperzoo.modeling import focusllm as focus


def tiny(family: str, attn: str = "sdpa"):
    torch.manual_seed(0)
    common = dict(vocab_size=53, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  intermediate_size=48, bos_token_id=1, pad_token_id=0, max_position_embeddings=256)
    cls, config = ((LlamaForCausalLM, LlamaConfig(**common)) if family == "llama"
                   else (Qwen2ForCausalLM, Qwen2Config(**common)))
    config._attn_implementation = attn
    model = cls(config).double().eval()
    focus.attach_candidates(model)
    with torch.no_grad():  # candidates that differ from the base, so that a mix-up shows
        for name, p in model.named_parameters():
            if ".candidate." in name:
                p.add_(torch.randn_like(p) * 0.1)
    return model


def chunks_and_prompt(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    chunks = [torch.randint(2, 53, (n,), generator=g) for n in (9, 4, 12)]
    return chunks, torch.randint(2, 53, (5,), generator=g)


# transformers computes rotary angles (and eager attention's softmax) in fp32 even in a float64 model: agreement is at
# fp32 rounding, far below what a wrong position (a rotation by θ_i per step) or a padding leak would change
TOL = dict(rtol=1e-6, atol=1e-6)

FAMILIES = [pytest.param("llama", "sdpa", id="llama-sdpa"), pytest.param("llama", "eager", id="llama-eager"),
            pytest.param("qwen2", "sdpa", id="qwen2-sdpa")]


@pytest.mark.parametrize("family, attn", FAMILIES)
def test_the_batched_chunk_pass_equals_one_pass_per_chunk(family, attn):
    model = tiny(family, attn)
    chunks, prompt = chunks_and_prompt()
    with torch.no_grad():
        batched = focus.encode_candidates(model, *focus.chunk_rows(chunks, prompt, 1, 0))
        for i, chunk in enumerate(chunks):
            alone = focus.encode_candidates(model, *focus.chunk_rows([chunk], prompt, 1, 0))
            for (kb, vb), (ka, va) in zip(batched, alone):
                torch.testing.assert_close(kb[i], ka[0], **TOL)
                torch.testing.assert_close(vb[i], va[0], **TOL)


@pytest.mark.parametrize("family, attn", FAMILIES[::2])
def test_moved_candidate_keys_equal_keys_computed_at_the_target_position(family, attn):
    model = tiny(family, attn)
    chunks, prompt = chunks_and_prompt(1)
    ids, mask, positions = focus.chunk_rows(chunks, prompt, 1, 0)
    shift = torch.tensor([-7, 3, 20])
    with torch.no_grad():
        here = focus.encode_candidates(model, ids, mask, positions)
        there = focus.encode_candidates(model, ids, mask, positions + shift[:, None])
    for (k, _), (k_there, _) in zip(here, there):
        torch.testing.assert_close(focus.move_keys(model, k, shift), k_there, **TOL)
        assert (k - k_there).abs().max() > 1e-3  # the shift matters


def test_a_loss_through_the_candidate_prefix_trains_the_candidates_only():
    model = tiny("llama")
    chunks, prompt = chunks_and_prompt(2)
    local = torch.cat([torch.randint(2, 53, (6,), generator=torch.Generator().manual_seed(3)), prompt])[None]
    prefix = focus.candidate_prefix(model, chunks, prompt)
    k = len(chunks)
    out = model(input_ids=local, position_ids=torch.arange(k, k + local.shape[1])[None],
                attention_mask=torch.ones(1, k + local.shape[1], dtype=torch.long), cache=prefix, use_cache=True)
    out.logits[0, -1].logsumexp(-1).backward()
    trained = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    candidates = {n for n, _ in model.named_parameters() if ".candidate." in n}
    assert trained == candidates
    assert not any(n.startswith("model.layers.1.self_attn.q_proj") or n.startswith("model.layers.1.self_attn.o_proj")
                   for n in candidates if ".candidate." in n)  # the last layer's Q/O copies are not created
    assert {n.split(".self_attn.")[1].split(".")[0] for n in candidates} == {"q_proj", "k_proj", "v_proj", "o_proj"}


def test_a_fused_qkv_model_is_refused_naming_its_modules():
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    model = GPTNeoXForCausalLM(GPTNeoXConfig(vocab_size=53, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                             intermediate_size=48))
    with pytest.raises(ValueError, match="query_key_value|self_attn"):
        focus.attach_candidates(model)


def test_an_input_within_the_local_window_gets_the_base_model_logits_exactly():
    model = tiny("llama")
    ids = torch.randint(2, 53, (20,), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        got = focus.focus_logits(model, ids, local_window=20, chunk_size=8, dynamic_prompt_len=4)
        assert torch.equal(got, model(ids[None], use_cache=False).logits[0])


def test_a_long_input_reads_its_memory_through_one_candidate_per_chunk():
    model = tiny("llama")
    ids = torch.randint(2, 53, (47,), generator=torch.Generator().manual_seed(5))
    chunks, prompt, local = focus.split_input(ids, local_window=12, chunk_size=10, dynamic_prompt_len=4)
    assert [len(c) for c in chunks] == [10, 10, 10, 5]
    assert torch.equal(prompt, ids[-4:]) and torch.equal(local, ids[-12:])
    with torch.no_grad():
        got = focus.focus_logits(model, ids, local_window=12, chunk_size=10, dynamic_prompt_len=4)
        # the same prefix built chunk by chunk (the official sequential loop), each candidate moved to position i
        prefix = focus.DynamicCache(config=model.config)
        for i, chunk in enumerate(chunks):
            ids_i, mask_i, pos_i = focus.chunk_rows([chunk], prompt, 1, 0)
            for layer, (k, v) in enumerate(focus.encode_candidates(model, ids_i, mask_i, pos_i - pos_i[:, -1:] + i)):
                prefix.update(k, v, layer)
        want = model(local[None], position_ids=torch.arange(4, 16)[None], attention_mask=torch.ones(1, 16),
                     cache=prefix).logits[0]
        alone = model(local[None], use_cache=False).logits[0]
    torch.testing.assert_close(got, want, **TOL)
    assert (got - alone).abs().max() > 1e-3  # the memory changes the prediction
    with pytest.raises(ValueError, match="max_position_embeddings=256"):
        focus.focus_logits(model, torch.randint(2, 53, (300,)), local_window=12, chunk_size=1, dynamic_prompt_len=4)
    with pytest.raises(ValueError, match="chunk_size=0"):
        focus.focus_logits(model, ids, local_window=12, chunk_size=0, dynamic_prompt_len=4)

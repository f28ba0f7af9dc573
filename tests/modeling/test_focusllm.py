"""FocusLLM on tiny random base models (Llama with GQA under sdpa and eager attention, Qwen2 with q/k/v biases),
float64, against an independent reference: the official design written out directly, one chunk at a time, each
candidate computed at its prefix position (the chunk's positions shifted so that its last token lands there), the
prefix a DynamicCache, the local window read by the base model. The model's batched passes, key moving, cache and
padding must all reproduce it. (The model contract, tests/contract, covers generation, save/load, Trainer, Hub.)"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, DynamicCache, LlamaConfig, Qwen2Config

import paperzoo
from paperzoo.modeling.focusllm import candidate_pass

BASES = {"llama": LlamaConfig, "qwen2": Qwen2Config}
COMMON = dict(vocab_size=53, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
              intermediate_size=48, bos_token_id=1, eos_token_id=2, pad_token_id=0, max_position_embeddings=256)

# transformers computes rotary angles (and eager attention's softmax) in fp32 even in a float64 model: agreement is at
# fp32 rounding, far below what a wrong position (a rotation by θ_i per step) or a padding leak would change
TOL = dict(rtol=1e-6, atol=1e-6)

FAMILIES = [pytest.param("llama", "sdpa", id="llama-sdpa"), pytest.param("llama", "eager", id="llama-eager"),
            pytest.param("qwen2", "sdpa", id="qwen2-sdpa")]


def base_model(family: str = "llama", attn: str = "sdpa", **overrides):
    torch.manual_seed(0)
    config = BASES[family](**{**COMMON, **overrides})
    config._attn_implementation = attn
    return AutoModelForCausalLM.from_config(config).double().eval()


def focus_model(family="llama", attn="sdpa", base_overrides=None, **focus_args):
    focus_args = {"chunk_size": 5, "local_window": 8, "dynamic_prompt_len": 3, **focus_args}
    model = paperzoo.FocusLLMForCausalLM.from_base(base_model(family, attn, **(base_overrides or {})), **focus_args)
    with torch.no_grad():  # candidates that differ from the base, so that a mix-up shows
        g = torch.Generator().manual_seed(1)
        for name, p in model.named_parameters():
            if ".candidate." in name:
                p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model.eval()


def tokens(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(3, 53, (n,), generator=torch.Generator().manual_seed(seed))


def reference_next_logits(model, ids: torch.Tensor, chunk: int, window: int, prompt_len: int) -> torch.Tensor:
    """The official design, sequentially: chunks of the memory one at a time, [chunk, BOS, prompt] with the candidate
    flag, positions shifted so that the candidate sits at i; the candidates' K/V as a prefix of the local window."""
    base, bos = model.base, model.config.bos_token_id
    if len(ids) <= window:
        return base(ids[None], use_cache=False).logits[0, -1]
    memory, local = ids[:-window], ids[-window:]
    prompt = local[-prompt_len:]
    prefix = DynamicCache(config=base.config)
    chunks = memory.split(chunk)
    for i, c in enumerate(chunks):
        row = torch.cat([c, torch.tensor([bos]), prompt])[None]
        cache = DynamicCache(config=base.config)
        with candidate_pass():
            base(row, position_ids=torch.arange(row.shape[1])[None] + i - (row.shape[1] - 1), cache=cache,
                 use_cache=True)
        for layer_idx, layer in enumerate(cache.layers):
            prefix.update(layer.keys[:, :, -1:], layer.values[:, :, -1:], layer_idx)
    k = len(chunks)
    return base(local[None], position_ids=torch.arange(k, k + window)[None], cache=prefix,
                attention_mask=torch.ones(1, k + window, dtype=torch.long)).logits[0, -1]


@pytest.mark.parametrize("family, attn", FAMILIES)
def test_every_position_equals_the_sequential_reference(family, attn):
    model = focus_model(family, attn)
    ids = tokens(31)  # up to 23 memory tokens: 4 full chunks of 5 and a partial one
    with torch.no_grad():
        got = model(ids[None]).logits[0]  # [31, V]
        for t in (0, 7, 8, 9, 12, 13, 20, 30):
            want = reference_next_logits(model, ids[: t + 1], 5, 8, 3)
            torch.testing.assert_close(got[t], want, **TOL, msg=f"position {t}")
        alone = model.base(ids[None], use_cache=False).logits[0]
    assert (got[30] - alone[30]).abs().max() > 1e-3  # the memory changes the prediction


def test_chunks_as_one_batch_equal_the_official_sequential_loop():
    """chunk_batch_size=1 runs the chunk and prompt passes one chunk at a time, as the official code does."""
    ids = tokens(40, seed=2)
    with torch.no_grad():
        batched = focus_model()(ids[None], logits_to_keep=4).logits
        for size in (1, 3):
            sequential = focus_model(chunk_batch_size=size)(ids[None], logits_to_keep=4).logits
            torch.testing.assert_close(sequential, batched, **TOL)


def test_an_input_within_the_local_window_gets_the_base_logits_exactly():
    model = focus_model(min_len_for_focus=12)
    ids = tokens(11, seed=3)  # longer than local_window=8, shorter than min_len_for_focus: the base reads it all
    with torch.no_grad():
        assert torch.equal(model(ids[None]).logits, model.base(ids[None], use_cache=False).logits)
        got = model(tokens(12, seed=3)[None], logits_to_keep=1).logits[0, -1]
        want = reference_next_logits(model, tokens(12, seed=3), 5, 8, 3)
    torch.testing.assert_close(got, want, **TOL)


def test_rows_with_their_own_chunk_size_and_window_equal_each_row_alone():
    model = focus_model()
    rows = [tokens(n, seed=10 + n) for n in (27, 19, 33)]
    sizes, windows = [4, 7, 5], [8, 6, 10]
    width = max(len(r) for r in rows)
    ids = torch.zeros(3, width, dtype=torch.long)
    mask = torch.zeros(3, width, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r):], mask[i, width - len(r):] = r, 1
    with torch.no_grad():
        together = model(ids, attention_mask=mask, chunk_size=torch.tensor(sizes), local_window=windows,
                         logits_to_keep=3).logits
        for i, r in enumerate(rows):
            want = torch.stack([reference_next_logits(model, r[: len(r) - j], sizes[i], windows[i], 3)
                                for j in (2, 1, 0)])
            torch.testing.assert_close(together[i], want, **TOL)


def test_the_cache_keeps_full_chunks_and_decoding_equals_recomputation():
    model = focus_model()
    ids = tokens(30, seed=4)
    with torch.no_grad():
        full = model(ids[None]).logits[0]
        out = model(ids[None, :14], use_cache=True)
        cache = out.cache
        assert cache.rows[0].cached_chunks == 1  # 6 memory tokens after 14: one full chunk of 5
        for t in range(14, 30):
            step = model(ids[None, t : t + 1], cache=cache).logits[0, -1]
            torch.testing.assert_close(step, full[t], **TOL)
        assert cache.rows[0].cached_chunks == 4 and cache.get_seq_length() == 30
        with pytest.raises(ValueError, match="chunk_size=4"):
            model(ids[None, :1], cache=cache, chunk_size=4)


def test_gradients_reach_the_candidate_projections_only():
    model = focus_model().train()
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert names and all(".candidate." in n for n in names)
    last = model.config.base_config.num_hidden_layers - 1  # its q/o copies would never receive a gradient
    assert not any(f"layers.{last}.self_attn.q_proj" in n or f"layers.{last}.self_attn.o_proj" in n for n in names)
    fresh = paperzoo.FocusLLMForCausalLM.from_base(base_model(), local_window=8)
    for name, p in fresh.named_parameters():  # the candidates start as copies of the base projections
        if ".candidate." in name:
            assert torch.equal(p, fresh.get_parameter(name.replace(".candidate.", ".base.")))
    ids = tokens(30, seed=5)[None]
    model(ids, labels=ids).loss.backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None, name


def test_bad_sizes_and_bases_are_value_errors_naming_the_field():
    model = focus_model()
    ids = tokens(30)[None]
    with pytest.raises(ValueError, match="chunk_size=0"):
        model(ids, chunk_size=0)
    with pytest.raises(ValueError, match="local_window=-2"):
        model(ids, local_window=[-2])
    long = focus_model(base_overrides={"max_position_embeddings": 16})
    with pytest.raises(ValueError, match="max_position_embeddings=16"):  # 52 memory tokens: 11 candidates + 8 > 16
        long(tokens(60)[None], logits_to_keep=1)
    with pytest.raises(ValueError, match="labels count after position 0,"):
        model(ids, labels=ids, logits_to_keep=2)
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, T5Config

    with pytest.raises(ValueError, match="query_key_value|self_attn"):  # fused QKV
        paperzoo.FocusLLMForCausalLM.from_base(GPTNeoXForCausalLM(GPTNeoXConfig(
            vocab_size=53, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=48)),
            local_window=8)
    with pytest.raises(ValueError, match="base_config=T5Config"):
        paperzoo.FocusLLMConfig(base_config=T5Config())
    from transformers import BertConfig, BertModel

    with pytest.raises(ValueError, match="base=BertModel"):
        paperzoo.FocusLLMForCausalLM.from_base(BertModel(BertConfig(hidden_size=32, num_hidden_layers=1,
                                                                    num_attention_heads=4, intermediate_size=48)))


def test_short_inputs_decode_as_the_base_model_until_a_memory_appears():
    model = focus_model()
    prompt = tokens(3, seed=6)[None]
    greedy = dict(do_sample=False, eos_token_id=None, pad_token_id=0, output_logits=True, return_dict_in_generate=True)
    with torch.no_grad():
        out = model.generate(prompt, max_new_tokens=9, **greedy)  # lengths 3..11: a memory from 9 tokens on
        base = model.base.generate(prompt, max_new_tokens=5, **greedy)
        assert torch.equal(out.sequences[:, :8], base.sequences)  # the base's own decoding while no memory exists
        for i, step in enumerate(out.logits):
            want = model(out.sequences[:, : 3 + i], use_cache=False).logits[:, -1]
            torch.testing.assert_close(step.double(), want, **TOL)
        assert out.cache.base_cache is None and out.cache.rows[0].cached_chunks == 0  # 3 memory tokens: partial
        cache = model(prompt, use_cache=True).cache
        assert cache.base_cache is not None and cache.base_cache.get_seq_length() == 3


def test_growing_decoding_equals_a_forward_with_the_window_and_prompt_grown_by_the_tokens_generated():
    """decoding="growing" (the official decoding: each chunk reads 2 tokens per step): step t of a left-padded
    batch equals the full forward with local_window + t and dynamic_prompt_len + t, and differs from sliding."""
    model = focus_model(decoding="growing")
    rows = [tokens(n, seed=20 + n) for n in (23, 17)]
    width = max(len(r) for r in rows)
    ids = torch.zeros(2, width, dtype=torch.long)
    mask = torch.zeros(2, width, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r):], mask[i, width - len(r):] = r, 1
    greedy = dict(do_sample=False, eos_token_id=None, pad_token_id=0, output_logits=True, return_dict_in_generate=True)
    with torch.no_grad():
        out = model.generate(ids, attention_mask=mask, max_new_tokens=6, **greedy)
        for i, r in enumerate(rows):
            seq = torch.cat([r, out.sequences[i, width:]])
            for t, step in enumerate(out.logits):
                want = model(seq[None, : len(r) + t], local_window=8 + t, dynamic_prompt_len=3 + t,
                             logits_to_keep=1).logits[0, -1]
                torch.testing.assert_close(step[i].double(), want, **TOL)
            assert len(out.cache.rows[i].growing.chunk_rows) == -(-(len(r) - 8) // 5)  # the chunks of the prompt
        sliding = model(seq[None], logits_to_keep=1).logits[0, -1]
        assert (sliding - want).abs().max() > 1e-3
        with pytest.raises(ValueError, match="logits_to_keep=1"):  # two new tokens, both scored
            past = out.cache.get_seq_length()
            model(torch.tensor([[5, 6], [7, 8]]), attention_mask=torch.ones(2, past + 2, dtype=torch.long),
                  cache=out.cache, logits_to_keep=0)

"""The generation contract, for every architecture with a causal LM head (tests/contract/architectures.py), written
the way transformers' `GenerationTesterMixin` checks its models: greedy, beam and sampled decoding with and without a
cache, continuing from a returned cache (token ids, embeddings, a finished generate), left padding, chunked prefill,
the compiled decoding step, deprecated cache keywords and the empty prompt.

The reference is always a full forward pass over the whole sequence (or `generate` without a cache), in float64.
"""

from __future__ import annotations

import itertools
import warnings

import pytest
import torch
from transformers import CompileConfig

from .architectures import cases

LM = cases("generation", tasks=("causal_lm",))
GREEDY = dict(do_sample=False, eos_token_id=None, pad_token_id=0)


def prompt(arch, model, rows=2, seed=1, length=9):
    return arch.token_ids(model.config, rows, seed)[:, :length]


def full_logits(model, ids, **kwargs):
    with torch.no_grad():
        return model(ids, use_cache=False, **kwargs).logits


def last_token_case(arch, mc):
    """A model, a 10-token prompt and the full forward's logits at its last position: what a cache of the first 9
    tokens must lead to."""
    model = arch.model(mc)
    ids = prompt(arch, model, length=10)
    return model, ids, full_logits(model, ids)[:, -1]


@pytest.mark.parametrize("arch, mc", LM)
def test_greedy_step_logits_equal_a_full_forward_and_the_uncached_search(arch, mc):
    model = arch.model(mc)
    ids = prompt(arch, model)
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=10, output_logits=True, return_dict_in_generate=True, **GREEDY)
        uncached = model.generate(ids, max_new_tokens=10, use_cache=False, **GREEDY)
    for i, step in enumerate(out.logits):
        want = full_logits(model, out.sequences[:, : ids.shape[1] + i])[:, -1]
        torch.testing.assert_close(step.double(), want, rtol=1e-6, atol=1e-6)  # generate returns fp32 logits
    assert torch.equal(out.sequences, uncached)
    assert out.cache.get_seq_length() == out.sequences.shape[1] - 1  # the last token is never fed


@pytest.mark.parametrize("arch, mc", LM)
def test_beam_search_with_a_cache_equals_without(arch, mc):
    model = arch.model(mc)
    kwargs = dict(max_new_tokens=7, num_beams=3, num_return_sequences=2, **GREEDY)
    with torch.no_grad():
        cached = model.generate(prompt(arch, model), **kwargs)
        uncached = model.generate(prompt(arch, model), use_cache=False, **kwargs)
    assert cached.shape == (4, 16) and torch.equal(cached, uncached)


@pytest.mark.parametrize("arch, mc", LM)
def test_sampling_is_seeded_and_the_cache_does_not_change_it(arch, mc):
    model = arch.model(mc)
    kwargs = dict(max_new_tokens=10, do_sample=True, top_k=20, temperature=0.9, eos_token_id=None, pad_token_id=0)
    runs = []
    for use_cache in (True, True, False):
        torch.manual_seed(3)
        with torch.no_grad():
            runs.append(model.generate(prompt(arch, model), use_cache=use_cache, **kwargs))
    assert runs[0].shape == (2, 19) and torch.equal(runs[0], runs[1]) and torch.equal(runs[0], runs[2])


@pytest.mark.parametrize("form", ["input_ids", "inputs_embeds"])
@pytest.mark.parametrize("arch, mc", LM)
def test_generate_continues_from_a_returned_cache(arch, mc, form):
    """generate(whole sequence, cache=cache of all but its last token) feeds only that token, from ids or embeddings."""
    model, ids, want = last_token_case(arch, mc)
    with torch.no_grad():
        given = ids if form == "input_ids" else model.get_input_embeddings()(ids)
        cache = model(**{form: given[:, :9]}, use_cache=True).cache
        assert cache.get_seq_length() == 9
        out = model.generate(**{form: given}, attention_mask=torch.ones_like(ids), cache=cache, max_new_tokens=1,
                             output_logits=True, return_dict_in_generate=True, **GREEDY)
    torch.testing.assert_close(out.logits[0].double(), want, rtol=1e-6, atol=1e-6)
    assert out.cache is cache and cache.get_seq_length() == 10


@pytest.mark.parametrize("arch, mc", LM)
def test_generate_from_inputs_embeds_equals_from_input_ids(arch, mc):
    model = arch.model(mc)
    ids = prompt(arch, model, length=10)
    with torch.no_grad():
        from_embeds = model.generate(inputs_embeds=model.get_input_embeddings()(ids), max_new_tokens=6, **GREEDY)
        from_ids = model.generate(ids, max_new_tokens=6, **GREEDY)
    assert torch.equal(from_embeds, from_ids[:, ids.shape[1]:])  # generate from embeddings returns the new tokens


@pytest.mark.parametrize("arch, mc", LM)
def test_a_second_turn_continues_the_first_generate(arch, mc):
    """Chat / prompt caching: generate, append the user's next tokens, generate again from the returned cache."""
    model = arch.model(mc)
    first = prompt(arch, model, length=6)
    reply = prompt(arch, model, seed=7, length=5)
    with torch.no_grad():
        turn = model.generate(first, max_new_tokens=4, return_dict_in_generate=True, **GREEDY)
        second = torch.cat([turn.sequences, reply], dim=1)
        # with the mask a tokenizer returns: positions then come from the mask, the fed tokens from the cache length
        cached = model.generate(second, attention_mask=torch.ones_like(second), cache=turn.cache, max_new_tokens=6,
                                output_logits=True, return_dict_in_generate=True, **GREEDY)
        fresh = model.generate(second, max_new_tokens=6, use_cache=False, output_logits=True,
                               return_dict_in_generate=True, **GREEDY)
    assert torch.equal(cached.sequences, fresh.sequences)
    for a, b in zip(cached.logits, fresh.logits):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("arch, mc", LM)
def test_chunked_prefill_equals_one_prefill(arch, mc):
    model = arch.model(mc)
    ids = prompt(arch, model, length=13)
    with torch.no_grad():
        chunked = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=5, prefill_chunk_size=4,
                                 output_logits=True, return_dict_in_generate=True, **GREEDY)
        whole = model.generate(ids, max_new_tokens=5, output_logits=True, return_dict_in_generate=True, **GREEDY)
    assert torch.equal(chunked.sequences, whole.sequences)
    torch.testing.assert_close(chunked.logits[0], whole.logits[0], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("arch, mc", LM)
def test_left_padded_batch_equals_each_row_alone(arch, mc):
    model = arch.model(mc)
    rows = [prompt(arch, model, rows=1, seed=5 + i, length=n)[0] for i, n in enumerate((11, 4, 8))]
    T = max(len(r) for r in rows)
    batch = torch.zeros(len(rows), T, dtype=torch.long)
    mask = torch.zeros(len(rows), T, dtype=torch.long)
    for i, r in enumerate(rows):
        batch[i, T - len(r):], mask[i, T - len(r):] = r, 1
    with torch.no_grad():
        together = model.generate(batch, attention_mask=mask, max_new_tokens=6, output_logits=True,
                                  return_dict_in_generate=True, **GREEDY)
        for i, r in enumerate(rows):
            alone = model.generate(r[None], max_new_tokens=6, output_logits=True, return_dict_in_generate=True,
                                   **GREEDY)
            assert torch.equal(together.sequences[i, T:], alone.sequences[0, len(r):])
            for a, b in zip(together.logits, alone.logits):
                torch.testing.assert_close(a[i], b[0], rtol=1e-6, atol=1e-6)
        prefill = model(batch, attention_mask=mask, use_cache=False).logits
        for i, r in enumerate(rows):
            torch.testing.assert_close(prefill[i, T - len(r):], full_logits(model, r[None])[0], rtol=0,
                                       atol=arch.atol)


@pytest.mark.parametrize("arch, mc", LM)
def test_text_generation_pipeline_batches_like_generate(arch, mc):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, pipeline

    model = arch.model(mc, dtype=torch.float32)
    config = model.config
    words = [f"w{i}" for i in range(config.vocab_size)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token=words[0]))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=words[config.pad_token_id],
                                        bos_token=words[config.bos_token_id], eos_token=words[config.eos_token_id])
    generator = pipeline("text-generation", model=model, tokenizer=tokenizer)
    # one-digit words: transformers 5 splits "w13" into "w1" + "3" (the unknown word, id 0, the pad id), which
    # generate() would then mask as padding inside the prompt while the pipeline's tokenizer marks it real
    prompts = ["w5 w9 w3 w8 w7", "w4 w6"]
    assert tokenizer(prompts[0]).input_ids == [5, 9, 3, 8, 7]
    # batch_size=2 left-pads the shorter prompt: each row must still equal generate() on the prompt alone
    outputs = generator(prompts, max_new_tokens=6, do_sample=False, batch_size=2, return_tensors=True)
    for text, out in zip(prompts, outputs):
        ids = tokenizer(text, return_tensors="pt").input_ids
        want = model.generate(ids, max_new_tokens=6, do_sample=False)[0].tolist()
        got = list(out[0]["generated_token_ids"])
        # a row that ended (eos) is padded while the batch goes on: drop the pads generate() alone never made
        trailing = lambda ids: len(ids) - len(list(itertools.dropwhile(lambda t: t == config.pad_token_id, ids[::-1])))
        got = got[: len(got) - max(trailing(got) - trailing(want), 0)]
        assert got[len(got) - len(want):] == want and set(got[: len(got) - len(want)]) <= {config.pad_token_id}


@pytest.mark.parametrize("arch, mc", cases("static_cache", tasks=("causal_lm",)))
def test_compiled_decoding_step_equals_eager(arch, mc):
    """`generate(..., cache_implementation="static")` compiles the one-token step with torch.compile (full graph)
    through transformers' own auto-compile (on GPUs by default; `_compile_all_devices` asks for it on CPU)."""
    model = arch.model(mc)
    ids = prompt(arch, model)
    compile_config = CompileConfig(fullgraph=True, mode="default", backend="aot_eager")
    compile_config._compile_all_devices = True
    torch._dynamo.reset()
    with torch.no_grad():
        eager = model.generate(ids, max_new_tokens=8, output_logits=True, return_dict_in_generate=True, **GREEDY)
        compiled = model.generate(ids, max_new_tokens=8, output_logits=True, return_dict_in_generate=True,
                                  cache_implementation="static", compile_config=compile_config, **GREEDY)
    assert hasattr(model, "_compiled_call"), "generate did not compile the decoding step"
    assert torch.equal(compiled.sequences, eager.sequences)
    for a, b in zip(compiled.logits, eager.logits):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["past_key_values", "cache_params"])
@pytest.mark.parametrize("arch, mc", LM)
def test_deprecated_cache_keywords_map_to_cache(arch, mc, name):
    model, ids, want = last_token_case(arch, mc)
    with torch.no_grad():
        cache = model(ids[:, :9], use_cache=True).cache
        with pytest.warns(FutureWarning, match=name):
            got = model(ids[:, 9:], **{name: cache}).logits[:, -1]
        torch.testing.assert_close(got, want, rtol=0, atol=arch.atol)
        other = model(ids[:, :9], use_cache=True).cache
        with pytest.raises(ValueError, match=name), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            model(ids[:, 9:], cache=cache, **{name: other})


@pytest.mark.parametrize("arch, mc", LM)
def test_an_empty_prompt_is_a_value_error(arch, mc):
    model = arch.model(mc)
    empty = torch.empty(1, 0, dtype=torch.long)
    with pytest.raises(ValueError, match="no tokens"):
        model(empty)
    with pytest.raises(ValueError, match="no tokens"):
        model.generate(empty, max_new_tokens=3, **GREEDY)

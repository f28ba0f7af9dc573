"""RetNet model behaviour: forms agree, decoding == full forward, generation, padding, errors, HF integrations.

The independent references are the model's own full parallel forward in float64 (for every incremental path) and
the float64 reference kernels; torchscale parity is in test_retnet_torchscale.py.
"""

import copy

import pytest
import torch
from transformers import AutoModelForCausalLM, DynamicCache

import paperzoo  # noqa: F401  (registers the Auto classes)
from paperzoo import RetNetConfig, RetNetForCausalLM, RetNetForSequenceClassification, RetNetModel

VOCAB = 97


def tiny_config(**overrides) -> RetNetConfig:
    kwargs = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48,
                  chunk_size=8, kernel_backend="reference", pad_token_id=0, bos_token_id=1, eos_token_id=2)
    kwargs.update(overrides)
    return RetNetConfig(**kwargs)


def tiny_model(dtype=torch.float64, seed=0, **overrides) -> RetNetForCausalLM:
    torch.manual_seed(seed)
    model = RetNetForCausalLM(tiny_config(**overrides)).to(dtype).eval()
    with torch.no_grad():  # larger q/k than the 2^-2.5 xavier init, so that outputs depend on the context
        for layer in model.model.layers:
            layer.retention.q_proj.weight.mul_(8)
            layer.retention.k_proj.weight.mul_(8)
    return model


def ids(B, T, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, VOCAB, (B, T), generator=g)


# --- forms and decoding -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("T", [1, 7, 8, 21, 40])
def test_chunkwise_parallel_recurrent_forms_agree(T):
    model = tiny_model()
    x = ids(2, T)
    with torch.no_grad():
        parallel = model(x).logits if T <= 8 else None
        wide = copy.deepcopy(model)
        for layer in wide.model.layers:
            layer.retention.chunk_size = 64  # T ≤ 64 → parallel form
        reference = wide(x).logits
        chunked = model(x).logits  # chunk 8: chunkwise form for T > 8
        cache = DynamicCache(config=model.config)
        steps = [model(x[:, t : t + 1], cache=cache, use_cache=True).logits for t in range(T)]
    torch.testing.assert_close(chunked, reference, rtol=0, atol=1e-10)
    torch.testing.assert_close(torch.cat(steps, 1), reference, rtol=0, atol=1e-10)
    if parallel is not None:
        torch.testing.assert_close(parallel, reference, rtol=0, atol=1e-10)
    # the context matters (a model that ignores it would pass the equalities above trivially)
    assert (reference[:, -1] - model(x[:, -1:]).logits[:, -1]).abs().max() > 1e-3 or T == 1


def test_prefill_longer_than_chunk_then_decode_matches_full_forward():
    model = tiny_model()
    x = ids(2, 30)
    with torch.no_grad():
        full = model(x).logits
        out = model(x[:, :19], use_cache=True)  # 19 > chunk 8: chunkwise prefill into the state
        steps = [out.logits]
        for t in range(19, 30):
            out = model(x[:, t : t + 1], cache=out.cache)
            steps.append(out.logits)
        two_chunks = model(x[:, 19:], cache=model(x[:, :19], use_cache=True).cache).logits
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=0, atol=1e-10)
    torch.testing.assert_close(two_chunks, full[:, 19:], rtol=0, atol=1e-10)


def test_greedy_generate_logits_equal_full_recompute():
    model = tiny_model()
    prompt = ids(2, 11)
    with torch.no_grad():
        out = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=12, do_sample=False,
                             output_logits=True, return_dict_in_generate=True, eos_token_id=None)
        for i, step_logits in enumerate(out.logits):
            full = model(out.sequences[:, : prompt.shape[1] + i]).logits[:, -1]
            # generate hands logits back in float32: compare at float32 resolution
            torch.testing.assert_close(step_logits.to(full.dtype), full, rtol=1e-6, atol=1e-6)
        uncached = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=12,
                                  do_sample=False, use_cache=False, eos_token_id=None)
    assert torch.equal(out.sequences, uncached)


def test_beam_search_cached_equals_uncached():
    model = tiny_model()
    prompt = ids(2, 9)
    kw = dict(attention_mask=torch.ones_like(prompt), max_new_tokens=8, num_beams=3, do_sample=False,
              eos_token_id=None, num_return_sequences=2)
    with torch.no_grad():
        assert torch.equal(model.generate(prompt, **kw), model.generate(prompt, use_cache=False, **kw))


def test_sampling_runs_and_is_seeded():
    model = tiny_model()
    prompt = ids(1, 5)
    kw = dict(max_new_tokens=10, do_sample=True, top_k=20, temperature=0.9, eos_token_id=None)
    torch.manual_seed(3)
    a = model.generate(prompt, **kw)
    torch.manual_seed(3)
    b = model.generate(prompt, **kw)
    assert a.shape == (1, 15) and torch.equal(a, b)


def test_left_padded_batch_equals_rows_alone():
    model = tiny_model()
    rows = [ids(1, 13, seed=5)[0], ids(1, 6, seed=6)[0], ids(1, 9, seed=7)[0]]
    T = max(len(r) for r in rows)
    batch = torch.zeros(len(rows), T, dtype=torch.long)
    mask = torch.zeros(len(rows), T, dtype=torch.long)
    for i, r in enumerate(rows):
        batch[i, T - len(r):], mask[i, T - len(r):] = r, 1
    with torch.no_grad():
        batched = model.generate(batch, attention_mask=mask, max_new_tokens=10, do_sample=False, eos_token_id=None,
                                 pad_token_id=0, output_logits=True, return_dict_in_generate=True)
        for i, r in enumerate(rows):
            alone = model.generate(r[None], max_new_tokens=10, do_sample=False, eos_token_id=None, pad_token_id=0,
                                   output_logits=True, return_dict_in_generate=True)
            assert torch.equal(batched.sequences[i, T:], alone.sequences[0, len(r):])
            for a, b in zip(batched.logits, alone.logits):
                torch.testing.assert_close(a[i], b[0], rtol=0, atol=1e-9)
        # the prefill logits of the real tokens match too (positions counted from each row's first real token)
        full = model(batch, attention_mask=mask).logits
        for i, r in enumerate(rows):
            torch.testing.assert_close(full[i, T - len(r):], model(r[None]).logits[0], rtol=0, atol=1e-9)


def test_cache_continues_without_position_ids_or_mask():
    model = tiny_model()
    x = ids(1, 12)
    with torch.no_grad():
        out = model(x[:, :5], use_cache=True)
        more = model(x[:, 5:], cache=out.cache)
        torch.testing.assert_close(more.logits, model(x).logits[:, 5:], rtol=0, atol=1e-10)


# --- kernels inside the model -------------------------------------------------------------------------------------


def test_model_state_is_constant_size():
    model = tiny_model()
    with torch.no_grad():
        short = model(ids(1, 4), use_cache=True).cache
        long = model(ids(1, 40), use_cache=True).cache
    size = lambda c: sum(t.numel() for layer in c.layers for t in layer.recurrent_states.values() if t is not None)
    assert size(short) == size(long) > 0


def test_half_precision_weights_run_close_to_float64():
    reference = tiny_model()
    x = ids(2, 20)
    with torch.no_grad():
        want = reference(x).logits
        for dtype in (torch.bfloat16, torch.float16, torch.float32):
            got = copy.deepcopy(reference).to(dtype)(x).logits.double()
            err = (got - want).abs().max() / want.abs().max()
            assert err < (5e-2 if dtype != torch.float32 else 1e-5), (dtype, err)


# --- heads and HF integrations -------------------------------------------------------------------------------------


def test_sequence_classification_pools_last_real_token():
    torch.manual_seed(0)
    model = RetNetForSequenceClassification(tiny_config(num_labels=3)).double().eval()
    x = ids(2, 10)
    mask = torch.ones_like(x)
    mask[1, :4] = 0  # left padding in row 1
    x[1, :4] = 0
    labels = torch.tensor([0, 2])
    with torch.no_grad():
        out = model(x, attention_mask=mask, labels=labels)
        alone = model(x[1:, 4:]).logits
        hidden = model.model(x[:1]).last_hidden_state[:, -1]
    torch.testing.assert_close(out.logits[1:], alone, rtol=0, atol=1e-10)
    torch.testing.assert_close(out.logits[:1], model.score(hidden), rtol=0, atol=1e-10)
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(out.logits, labels))


def test_tied_embeddings_and_auto_classes(tmp_path):
    model = RetNetForCausalLM(tiny_config(tie_word_embeddings=True))
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert isinstance(loaded, RetNetForCausalLM)
    assert (tmp_path / "model.safetensors").exists() and not list(tmp_path.glob("*.bin"))
    x = ids(1, 6)
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(x).logits, model.eval()(x).logits)


def test_activation_checkpointing_gives_same_gradients():
    x = ids(2, 20)
    grads = []
    for checkpointing in (False, True):
        model = tiny_model(dtype=torch.float64).train()
        if checkpointing:
            model.activation_checkpointing_enable()
        model(x, labels=x).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=0, atol=1e-12, msg=name)


def test_trainer_gradient_accumulation_matches_full_batch(tmp_path):
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    # rows of different lengths padded with -100 labels: the token-weighted mean must be exact across accumulation
    data = []
    for i in range(4):
        n = 6 + 3 * i
        row = ids(1, 16, seed=10 + i)[0].tolist()
        data.append({"input_ids": row, "labels": row[:n] + [-100] * (16 - n)})
    params = []
    for bs, ga in ((4, 1), (2, 2)):
        model = tiny_model(dtype=torch.float32)
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        args = TrainingArguments(output_dir=str(tmp_path / f"{bs}x{ga}"), per_device_train_batch_size=bs,
                                 gradient_accumulation_steps=ga, max_steps=1, learning_rate=1e-2, optim="sgd",
                                 lr_scheduler_type="constant", report_to=[], logging_steps=1, save_strategy="no",
                                 use_cpu=True, dataloader_drop_last=False, seed=0, data_seed=0)
        Trainer(model=model, args=args, train_dataset=Dataset.from_list(data)).train()
        params.append({n: p.detach() - before[n] for n, p in model.named_parameters()})
    for name in params[0]:
        torch.testing.assert_close(params[1][name], params[0][name], rtol=1e-4, atol=1e-7, msg=name)
    assert any(d.abs().max() > 0 for d in params[0].values())


@pytest.mark.parametrize("targets", ["all-linear", ["q_proj", "v_proj", "o_proj", "down_proj"]])
def test_peft_lora_trains_and_merges(targets, tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model

    base = tiny_model(dtype=torch.float32)
    x = ids(2, 12)
    peft_model = get_peft_model(copy.deepcopy(base), LoraConfig(r=4, lora_alpha=8, target_modules=targets))
    opt = torch.optim.SGD([p for p in peft_model.parameters() if p.requires_grad], lr=0.5)
    peft_model.train()
    for _ in range(3):
        peft_model(input_ids=x, labels=x).loss.backward()
        opt.step()
        opt.zero_grad()
    peft_model.eval()
    with torch.no_grad():
        adapted = peft_model(input_ids=x).logits
        assert (adapted - base(x).logits).abs().max() > 1e-4  # the adapter changed the function
        peft_model.save_pretrained(tmp_path)
        reloaded = PeftModel.from_pretrained(copy.deepcopy(base), tmp_path)(input_ids=x).logits
        merged = peft_model.merge_and_unload()(x).logits
        generated = peft_model.generate(input_ids=x, max_new_tokens=3, do_sample=False, eos_token_id=None)
    torch.testing.assert_close(reloaded, adapted, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(merged, adapted, rtol=1e-4, atol=1e-4)
    assert generated.shape == (2, 15)


def test_device_map_auto_keeps_blocks_whole(tmp_path):
    from accelerate import infer_auto_device_map

    model = tiny_model(dtype=torch.float32)
    assert model._no_split_modules == ["RetNetBlock"] or "RetNetBlock" in model._no_split_modules
    block_bytes = sum(p.numel() * 4 for p in model.model.layers[0].parameters())
    device_map = infer_auto_device_map(model, max_memory={"cpu": block_bytes + 32 * 97 * 4 * 2, "disk": 10**9},
                                       no_split_module_classes=model._no_split_modules)
    assert not any(".retention." in key or ".ffn." in key for key in device_map)  # never split inside a block
    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path, device_map="auto")
    x = ids(1, 6)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).logits, model(x).logits)


# --- bad input --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, field",
    [
        (dict(num_attention_heads=3), "num_attention_heads"),
        (dict(hidden_size=0), "hidden_size"),
        (dict(intermediate_size=-4), "intermediate_size"),
        (dict(value_size=51), "value_size"),
        (dict(kernel_backend="cuda"), "kernel_backend"),
        (dict(chunk_size=24), "chunk_size"),
        (dict(hidden_act="nope"), "hidden_act"),
        (dict(vocab_size=0), "vocab_size"),
    ],
)
def test_invalid_config_names_field(overrides, field):
    with pytest.raises(ValueError, match=field):
        tiny_config(**overrides)


def test_config_keeps_user_values():
    config = tiny_config(value_size=64, chunk_size=16)
    assert (config.value_size, config.value_dim, config.chunk_size) == (64, 64, 16)
    assert tiny_config().value_size is None and tiny_config().value_dim == 48


def test_bad_inputs_raise_clear_errors():
    model = tiny_model()
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model(torch.tensor([[1, VOCAB]]))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model(torch.tensor([[-1, 3]]))
    with pytest.raises(ValueError, match="attention_mask"):
        model(ids(2, 5), attention_mask=torch.ones(2, 3))
    with pytest.raises(ValueError, match="attention_mask"):
        model(ids(2, 5), attention_mask=torch.ones(2, 1, 5, 5))
    other = tiny_model(num_hidden_layers=3)
    with pytest.raises(ValueError, match="cache"):
        model(ids(1, 2), cache=other(ids(1, 2), use_cache=True).cache)
    wider = tiny_model(num_attention_heads=4)
    with pytest.raises(ValueError, match="another model"):
        model(ids(1, 2), cache=wider(ids(1, 2), use_cache=True).cache)
    with pytest.raises(ValueError, match="cache"):
        model(ids(1, 2), cache={"not": "a cache"})


def test_base_model_output_and_hidden_states():
    model = RetNetModel(tiny_config()).eval()
    out = model(ids(1, 5), output_hidden_states=True)
    assert out.last_hidden_state.shape == (1, 5, 32)
    assert len(out.hidden_states) == 3


def test_text_generation_pipeline_matches_generate():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, pipeline

    words = ["<pad>", "<s>", "</s>"] + [f"w{i}" for i in range(VOCAB - 3)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>")
    model = tiny_model(dtype=torch.float32)
    generator = pipeline("text-generation", model=model, tokenizer=tokenizer)
    prompts = ["w5 w9 w13 w2", "w40 w41"]
    # batch_size=2 left-pads the shorter prompt: each row must still equal generate() on the prompt alone
    outputs = generator(prompts, max_new_tokens=6, do_sample=False, batch_size=2, return_tensors=True)
    for prompt, out in zip(prompts, outputs):
        ids_ = tokenizer(prompt, return_tensors="pt").input_ids
        want = model.generate(ids_, max_new_tokens=6, do_sample=False)
        got = list(out[0]["generated_token_ids"])
        while got[0] == tokenizer.pad_token_id:  # the pipeline returns the left padding with the row
            got.pop(0)
        assert got == want[0].tolist()


def test_triton_backend_gives_reference_logits(monkeypatch):
    """Model level: the Triton kernels (under TRITON_INTERPRET=1 on CPU, or on CUDA) give the reference logits,
    for the chunkwise prefill, its gradients and the fused decoding step."""
    import paperzoo.kernels.retention as op

    calls = {"retention_chunkwise_triton": 0, "retention_step_triton": 0}
    for name in calls:  # count the kernel launches, so that a silent fallback cannot pass
        kernel = getattr(op, name)
        monkeypatch.setattr(op, name, lambda *a, _k=kernel, _n=name: calls.__setitem__(_n, calls[_n] + 1) or _k(*a))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    reference = tiny_model(dtype=torch.float32, chunk_size=16).to(device)
    fast = copy.deepcopy(reference)
    for layer in fast.model.layers:
        layer.retention.kernel_backend = "triton"
    x = ids(2, 21).to(device)
    for model in (reference, fast):
        model.train()
        model(x, labels=x).loss.backward()
        model.eval()
    with torch.no_grad():
        torch.testing.assert_close(fast(x).logits, reference(x).logits, rtol=1e-4, atol=1e-4)
        cache_r, cache_f = (m(x[:, :17], use_cache=True).cache for m in (reference, fast))
        for t in range(17, 21):  # one-token steps: the fused recurrent kernel
            step_r = reference(x[:, t : t + 1], cache=cache_r).logits
            step_f = fast(x[:, t : t + 1], cache=cache_f).logits
            torch.testing.assert_close(step_f, step_r, rtol=1e-4, atol=1e-4)
    for (name, p_r), p_f in zip(reference.named_parameters(), fast.parameters()):
        torch.testing.assert_close(p_f.grad, p_r.grad, rtol=1e-3, atol=1e-5, msg=name)
    assert calls["retention_chunkwise_triton"] >= 6 and calls["retention_step_triton"] == 8, calls

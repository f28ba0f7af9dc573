"""RetNet-specific behaviour: the three forms agree, chunkwise prefill then decoding == full forward, constant-size
state, precision, the classification head's pooling, explicit LoRA targets, device maps, errors, Triton in the model.

The independent references are the model's own full parallel forward in float64 (for every incremental path) and
the float64 reference kernels; torchscale parity is in test_retnet_torchscale.py. What every architecture must do
(generation, caches, padding, save/load, Trainer, tracing, ...) is in tests/contract.
"""

import copy

import pytest
import torch
from transformers import AutoModelForCausalLM, DynamicCache

import paperzoo  # noqa: F401  (registers the Auto classes)
from paperzoo import RetNetConfig, RetNetForCausalLM, RetNetForSequenceClassification

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


def test_triton_backend_gives_reference_logits(monkeypatch):
    """Model level: the Triton kernels (under TRITON_INTERPRET=1 on CPU, or on CUDA) give the reference logits,
    for the chunkwise prefill, its gradients and the fused decoding step."""
    import paperzoo.kernels.retention as op

    calls = {"retention_chunkwise_triton": 0, "retention_step_triton": 0}
    for name in calls:  # count the kernel launches, so that a silent fallback cannot pass
        kernel = getattr(op, name)
        monkeypatch.setattr(op, name, lambda *a, _k=kernel, _n=name, **kw: calls.__setitem__(_n, calls[_n] + 1)
                            or _k(*a, **kw))
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

"""YOCO behaviour beyond the shared model contract: the cache that stores one K/V, the sliding window that never grows,
prefill early exit in segments, multi-token appends to a cache, half precision at 4k tokens, Triton == reference.

The reference for every cached or early-exit computation is the same model's full forward pass (no cache, every
position); the official modules are checked in test_yoco_official.py."""

from __future__ import annotations

import pytest
import torch

import paperzoo.modeling.yoco as yoco
from paperzoo import YOCOConfig, YOCOForCausalLM


def tiny(seed: int = 0, dtype=torch.float64, **overrides) -> YOCOForCausalLM:
    kwargs = dict(vocab_size=61, hidden_size=32, num_hidden_layers=4, intermediate_size=48, num_self_heads=2,
                  num_attention_heads=4, num_key_value_heads=2, chunk_size=8, kernel_backend="reference")
    kwargs.update(overrides)
    torch.manual_seed(seed)
    model = YOCOForCausalLM(YOCOConfig(**kwargs)).to(dtype).eval()
    with torch.no_grad():  # larger than the official init, so that every position measurably depends on the context
        for name, p in model.named_parameters():
            if p.dim() == 2 and "embed" not in name:
                p.normal_(0, 0.3)
    return model


def token_ids(rows: int, length: int, seed: int = 1, vocab: int = 61) -> torch.Tensor:
    return torch.randint(0, vocab, (rows, length), generator=torch.Generator().manual_seed(seed))


SELF_DECODERS = [pytest.param({}, id="gated_retention"),
                 pytest.param({"self_decoder": "sliding_window", "sliding_window": 5}, id="sliding_window")]


def cache_bytes(cache) -> dict[int, int]:
    """Bytes held by each cache layer (every tensor it stores)."""
    held = {}
    for i, layer in enumerate(cache.layers):
        tensors = [t for t in (getattr(layer, "keys", None), getattr(layer, "values", None)) if t is not None]
        tensors += [s for s in getattr(layer, "recurrent_states", {}).values() if isinstance(s, torch.Tensor)]
        held[i] = sum(t.numel() * t.element_size() for t in tensors)
    return held


@pytest.mark.parametrize("overrides", SELF_DECODERS)
def test_cache_bytes_do_not_grow_with_the_number_of_cross_decoder_layers(overrides):
    ids = token_ids(2, 17)
    per_layer = {}
    for layers in (2, 4, 8):
        model = tiny(num_hidden_layers=layers, **overrides)
        with torch.no_grad():
            held = cache_bytes(model(ids, use_cache=True).cache)
        half = layers // 2
        assert len(held) == layers
        assert all(held[i] == 0 for i in range(half + 1, layers)), held  # the other cross layers store nothing
        per_layer[layers] = (held[0], held[half])
        assert all(held[i] == held[0] for i in range(half)), held
    # one self-decoder layer's state and the shared K/V are the same whatever the depth: bytes = L/2·state + one K/V
    assert len(set(per_layer.values())) == 1, per_layer
    _, shared = per_layer[2]
    assert shared == 2 * 2 * 2 * 17 * (32 // 4) * 8  # K and V, [B=2, Hkv=2, T=17, D=8] float64


def test_the_sliding_window_cache_never_grows_past_the_window():
    model = tiny(self_decoder="sliding_window", sliding_window=5)
    ids = token_ids(2, 30)
    with torch.no_grad():
        full = model(ids, use_cache=False).logits
        out = model(ids[:, :20], use_cache=True)
        cache = out.cache
        for t in range(20, 30):
            for i in range(2):  # a query sees itself and the 4 keys before it: the cache keeps 4
                assert cache.layers[i].keys.shape[-2] == 4
            step = model(ids[:, t : t + 1], cache=cache)
            torch.testing.assert_close(step.logits[:, -1], full[:, t], rtol=0, atol=1e-10)


@pytest.mark.parametrize("overrides", SELF_DECODERS)
def test_prefill_early_exit_runs_the_cross_decoder_only_where_logits_are_kept(overrides):
    model = tiny(prefill_segment_size=6, **overrides)
    ids = token_ids(2, 23)
    seen = {"self": [], "cross": []}
    hooks = [model.model.self_layers[0].register_forward_pre_hook(lambda m, a: seen["self"].append(a[0].shape[1])),
             model.model.cross_layers[0].register_forward_pre_hook(lambda m, a: seen["cross"].append(a[0].shape[1]))]
    with torch.no_grad():
        full = model(ids, use_cache=False).logits
        seen["self"].clear(), seen["cross"].clear()
        last = model(ids, use_cache=True, logits_to_keep=1)
        two = model(ids, use_cache=True, logits_to_keep=torch.tensor([22, 3, -20])).logits  # any order, from the end
    for h in hooks:
        h.remove()
    assert last.logits.shape == (2, 1, 61)
    torch.testing.assert_close(last.logits[:, 0], full[:, -1], rtol=0, atol=1e-10)
    torch.testing.assert_close(two, full[:, [22, 3, 3]], rtol=0, atol=1e-10)
    # the prompt went through the self-decoder in segments of 6; the cross-decoder saw 1 position, then 3
    assert seen["self"] == [6, 6, 6, 5] * 2 and seen["cross"] == [1, 3]
    assert last.cache.get_seq_length() == 23 and last.cache.get_seq_length(model.model.kv_layer_idx) == 23


@pytest.mark.parametrize("overrides", SELF_DECODERS)
def test_a_cache_takes_multi_token_appends_and_padding(overrides):
    """Prefill, append 7 tokens in one call (flash-linear-attention's YOCO allows one token only), then decode, in a
    left-padded batch: every logit equals the full forward of each row alone."""
    model = tiny(**overrides)
    ids = token_ids(2, 20)
    mask = torch.ones(2, 20, dtype=torch.long)
    mask[1, :3] = 0
    with torch.no_grad():
        cache = model(ids[:, :9], attention_mask=mask[:, :9], use_cache=True).cache
        mid = model(ids[:, 9:16], attention_mask=mask[:, :16], cache=cache).logits
        steps = [model(ids[:, t : t + 1], attention_mask=mask[:, : t + 1], cache=cache).logits[:, -1]
                 for t in range(16, 20)]
        for row, start in ((0, 0), (1, 3)):
            alone = model(ids[row : row + 1, start:], use_cache=False).logits[0]  # [20 - start, V]
            torch.testing.assert_close(mid[row], alone[9 - start : 16 - start], rtol=0, atol=1e-10)
            for i, step in enumerate(steps):
                torch.testing.assert_close(step[row], alone[16 - start + i], rtol=0, atol=1e-10)


def test_bad_inputs_are_value_errors_naming_the_value():
    model = tiny()
    ids = token_ids(1, 6)
    with torch.no_grad():
        cache = model(ids, use_cache=True).cache
        with pytest.raises(ValueError, match="past \\+ T = 8"):
            model(ids[:, :2], attention_mask=torch.ones(1, 2), cache=cache)
        with pytest.raises(ValueError, match="logits_to_keep"):
            model(ids, labels=ids, logits_to_keep=1)
        with pytest.raises(ValueError, match="-1"):
            model(ids, logits_to_keep=-1)
        with pytest.raises(ValueError, match="\\[-6, 6\\)"):
            model(ids, logits_to_keep=torch.tensor([6]))
        with pytest.raises(ValueError, match="use_cache=False"):  # a given cache is never silently dropped
            model(ids[:, :1], cache=cache, use_cache=False)
        other = tiny(self_decoder="sliding_window", sliding_window=3)(ids, use_cache=True).cache
        with pytest.raises(ValueError, match="sliding_window"):
            model(ids[:, :1], cache=other)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_keeps_the_decay_in_fp32_without_nan_at_4k_tokens(dtype, monkeypatch):
    model = tiny(dtype=torch.float32, hidden_size=64, chunk_size=64)
    ids = token_ids(1, 4096)
    with torch.no_grad():
        want = model(ids, use_cache=False).logits[0]  # [4096, V] fp32
    decay_dtypes = []
    kernel = yoco.gated_retention

    def recording(q, k, v, log_decay, *args, **kwargs):
        decay_dtypes.append((q.dtype, log_decay.dtype))
        return kernel(q, k, v, log_decay, *args, **kwargs)

    monkeypatch.setattr(yoco, "gated_retention", recording)
    with torch.no_grad():
        got = model.to(dtype)(ids, use_cache=False).logits[0].float()
    assert decay_dtypes and all(d == (dtype, torch.float32) for d in decay_dtypes), decay_dtypes
    assert torch.isfinite(got).all()

    def relative_error(rows):
        return ((got[rows] - want[rows]).norm() / want[rows].norm()).item()

    # the rounding of half-precision activations (measured: fp16 0.7 %, bf16 6 %), no larger at the end of 4k tokens
    # than at the start (the per-head RMS norm after retention hides a state's scale, so the fp32 decay is checked
    # by its dtype above, not through the logits)
    first, last = relative_error(slice(0, 64)), relative_error(slice(-64, None))
    assert last < (0.02 if dtype == torch.float16 else 0.12), (first, last)
    assert last < 1.5 * first + 0.005, (first, last)


@pytest.mark.parametrize("overrides", [pytest.param({}, id="gated_retention")])
def test_triton_kernels_give_the_reference_model(overrides):
    """kernel_backend="triton" (TRITON_INTERPRET=1 on CPU) against "reference": logits, decoding and gradients."""
    pytest.importorskip("triton")
    from paperzoo._env import triton_interpret

    if not triton_interpret() and not torch.cuda.is_available():
        pytest.fail("TRITON_INTERPRET=1 must be set for this test on CPU (tests/conftest.py sets it)")
    ids = token_ids(2, 21)
    outputs = {}
    for backend in ("reference", "triton"):
        model = tiny(dtype=torch.float32, kernel_backend=backend, **overrides).train()
        logits = model(ids, use_cache=False).logits
        logits.square().mean().backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if "self_layers" in n}
        with torch.no_grad():
            cache = model.eval()(ids[:, :13], use_cache=True).cache
            steps = torch.stack([model(ids[:, t : t + 1], cache=cache).logits[:, -1] for t in range(13, 21)])
        outputs[backend] = (logits.detach(), grads, steps)
    ref, tri = outputs["reference"], outputs["triton"]
    torch.testing.assert_close(tri[0], ref[0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(tri[2], ref[2], rtol=1e-4, atol=1e-4)
    for name, g in ref[1].items():
        torch.testing.assert_close(tri[1][name], g, rtol=1e-3, atol=1e-4, msg=name)

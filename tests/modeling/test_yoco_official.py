"""paperzoo's YOCO against the official YOCO decoder, through the checkpoint converter (float64).

The oracle is `yoco_official.py` next to this file: a transcription of microsoft/unilm `YOCO/yoco/models/decoder/`
with the official module and parameter names (see its header; benchmarks/yoco_official.py checks it against the real
official code). A tiny official YOCO with random weights (std 0.2, norm weights 1 ± 0.2, gate projection std 2 so
the decays spread over (0.6, 1)) is saved as the official checkpoint layout (state_dict, optionally under fairseq's
prefixes) plus params.json, converted with `convert_official_yoco` or the `paperzoo convert yoco` command, reloaded
in float64, and its logits compared with the oracle's: max|Δ| ≤ 1e-10 (float64 round-off is ~1e-14 here; the
oracle computes everything in the input dtype, unlike the official code, which rounds to fp32 in places).

Cases: the gated-retention and the sliding-window self-decoder (window 5 < T = 13, so the window matters), GQA in
the cross-decoder (4 query heads, 2 K/V heads), tied embeddings, and the converter's errors.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from paperzoo.convert.official_yoco import (
    convert_official_yoco,
    official_args_to_config,
    official_state_dict_to_paperzoo,
)

from .yoco_official import (
    YOCO,
    YOCOArgs,
    flash_attention_reference,
    parallel_gated_retention,
)

VOCAB, T, BATCH, WINDOW = 50, 13, 2, 5
ATOL = 1e-10  # float64 logits of magnitude ≈ 1-20

BASE = dict(dim=32, n_layers=4, hidden_dim=48, n_self_heads=2, n_attn_heads=4, n_attn_kv_heads=2, vocab_size=VOCAB,
            norm_eps=1e-5, rope_theta=10000.0)
# name: (params.json overrides, key prefix in the saved state_dict, share_input_output_embed)
CASES = {
    "gated-retention": ({}, "", False),
    "sliding-window": ({"sliding_window": WINDOW}, "decoder.model.", False),
    "gated-retention-tied-dim64": ({"dim": 64, "n_self_heads": 4, "rope_theta": 500.0, "norm_eps": 1e-6}, "model.",
                                   True),
    "sliding-window-mha-eps1e-3": ({"sliding_window": 3, "n_attn_kv_heads": None, "norm_eps": 1e-3}, "", False),
}


def _params(**overrides) -> dict:
    return dict(BASE, **overrides)


def _official(params: dict, tied: bool = False, seed: int = 0) -> YOCO:
    """The oracle at `params`, float64, with random weights that make every path matter."""
    args = YOCOArgs(**{k: (params["n_attn_heads"] if k == "n_attn_kv_heads" and v is None else v)
                       for k, v in params.items()})
    model = YOCO(args, share_input_output_embed=tied).double().eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            if "layer_norm" in name:
                p.copy_(1 + 0.2 * noise)
            elif "gt_proj" in name:
                p.copy_(2.0 * noise)
            else:
                p.copy_(0.2 * noise)
    return model


def _save(tmp_path: Path, model: YOCO, params: dict, prefix: str = "") -> tuple[Path, Path]:
    ckpt, params_json = tmp_path / "checkpoint.pth", tmp_path / "params.json"
    torch.save({prefix + k: v for k, v in model.state_dict().items()}, ckpt)
    params_json.write_text(json.dumps(params))
    return ckpt, params_json


def _tokens(seed: int = 1234) -> torch.Tensor:
    return torch.randint(0, VOCAB, (BATCH, T), generator=torch.Generator().manual_seed(seed))


def _logits(model, tokens) -> torch.Tensor:
    with torch.no_grad():
        return model(tokens).logits


# ------------------------------------------------------------------------------------- the oracle's own checks


def test_oracle_gated_retention_is_the_recurrence():
    """The parallel form equals S_t = exp(g_t) S_{t−1} + k_tᵀ v_t / sqrt(D), o_t = q_t S_t (the official decode)."""
    gen = torch.Generator().manual_seed(0)
    B, H, L, D = 2, 3, 9, 4
    q, k, v = (torch.randn(B, H, L, D, generator=gen, dtype=torch.float64) for _ in range(3))
    g = torch.nn.functional.logsigmoid(torch.randn(B, H, L, generator=gen, dtype=torch.float64)) / 4
    state, outs = torch.zeros(B, H, D, D, dtype=torch.float64), []
    for t in range(L):
        state = g[..., t, None, None].exp() * state + k[..., t, :, None] * v[..., t, None, :] * D ** -0.5
        outs.append(q[..., t, None, :] @ state)
    torch.testing.assert_close(parallel_gated_retention(q, k, v, g), torch.cat(outs, 2), rtol=0, atol=1e-13)


def test_oracle_flash_attention_masks():
    """flash-attn's documented masks: causal bottom-right, window (left, 0) = left + 1 keys, GQA head grouping."""
    gen = torch.Generator().manual_seed(0)
    B, Tq, Tk, H, Hkv, D = 1, 4, 7, 4, 2, 3
    q = torch.randn(B, Tq, H, D, generator=gen, dtype=torch.float64)
    k, v = (torch.randn(B, Tk, Hkv, D, generator=gen, dtype=torch.float64) for _ in range(2))
    out = flash_attention_reference(q, k, v, causal=True, window_left=2)
    for i in range(Tq):
        last = i + Tk - Tq  # bottom-right: the last query sees the last key
        for h in range(H):
            keys = slice(last - 2, last + 1)  # itself and the 2 before it
            p = torch.softmax(k[0, keys, h // 2] @ q[0, i, h] / D ** 0.5, dim=0)
            torch.testing.assert_close(out[0, i, h], p @ v[0, keys, h // 2], rtol=0, atol=1e-14)


# ------------------------------------------------------------------------------------------------ parity


@pytest.mark.parametrize("case", list(CASES))
def test_converted_model_matches_official(case, tmp_path):
    from paperzoo.modeling.yoco import YOCOForCausalLM

    overrides, prefix, tied = CASES[case]
    params = _params(**overrides)
    oracle = _official(params, tied=tied, seed=list(CASES).index(case))
    ckpt, params_json = _save(tmp_path, oracle, params, prefix)

    returned = convert_official_yoco(ckpt, params_json, tmp_path / "hf")
    assert isinstance(returned, YOCOForCausalLM)
    model = YOCOForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.float64).eval()
    cfg = model.config
    window = params.get("sliding_window")
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.intermediate_size, cfg.num_self_heads) == (
        params["dim"], 4, 48, params["n_self_heads"])
    assert (cfg.num_attention_heads, cfg.num_key_value_heads) == (4, params["n_attn_kv_heads"] or 4)
    assert (cfg.self_decoder, cfg.sliding_window) == (
        "gated_retention" if window is None else "sliding_window", window)
    assert (cfg.rms_norm_eps, cfg.rope_theta, cfg.gate_logit_normalizer) == (
        params["norm_eps"], params["rope_theta"], 16)
    assert cfg.tie_word_embeddings == tied
    if tied:
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()

    tokens = _tokens()
    with torch.no_grad():
        ref = oracle(tokens)
        other = tokens.clone()
        other[:, 0] = (other[:, 0] + 1) % VOCAB  # the comparison is only meaningful if distant context matters
        assert (oracle(other)[:, -1] - ref[:, -1]).abs().max() > 1e-3
    got = _logits(model, tokens)
    diff = (got - ref).abs().max().item()
    assert diff <= ATOL, f"{case}: max|Δlogits| = {diff:.3e} (max|logits| {ref.abs().max():.2f})"
    for t in (1, 6):  # shorter prompts: every prefix is the same function (causality)
        torch.testing.assert_close(_logits(model, tokens[:, :t]), ref[:, :t], rtol=0, atol=ATOL)


@pytest.mark.parametrize("self_decoder", ["gated_retention", "sliding_window"])
def test_state_dict_api_with_small_chunks(self_decoder):
    """official_args_to_config + official_state_dict_to_paperzoo with chunk_size 4 < T: paperzoo's chunked form."""
    from paperzoo.modeling.yoco import YOCOForCausalLM

    params = _params(**({"sliding_window": WINDOW} if self_decoder == "sliding_window" else {}))
    oracle = _official(params, seed=11)
    config = official_args_to_config(params, chunk_size=4)
    assert config.self_decoder == self_decoder and config.chunk_size == 4
    model = YOCOForCausalLM(config).double().eval()
    model.load_state_dict(official_state_dict_to_paperzoo(oracle.state_dict(), config), strict=True)
    tokens = _tokens(7)
    with torch.no_grad():
        torch.testing.assert_close(_logits(model, tokens), oracle(tokens), rtol=0, atol=ATOL)


@pytest.mark.parametrize("self_decoder", ["gated_retention", "sliding_window"])
def test_decoding_matches_official(self_decoder):
    """Prefill of 6 tokens (> the window; in segments of 4) with use_cache=True, then one token per call with the
    returned cache: the oracle's full-forward logits at every position (the official incremental path computes the
    same function: benchmarks/yoco_official.py checks that on the real code)."""
    from paperzoo.modeling.yoco import YOCOForCausalLM

    params = _params(**({"sliding_window": WINDOW} if self_decoder == "sliding_window" else {}))
    oracle = _official(params, seed=13)
    config = official_args_to_config(params, prefill_segment_size=4)
    model = YOCOForCausalLM(config).double().eval()
    model.load_state_dict(official_state_dict_to_paperzoo(oracle.state_dict(), config), strict=True)
    tokens = _tokens(9)
    with torch.no_grad():
        ref = oracle(tokens)
        out = model(tokens[:, :6], use_cache=True)
        steps, cache = [out.logits], out.cache
        for t in range(6, T):
            out = model(tokens[:, t : t + 1], cache=cache, use_cache=True)
            steps.append(out.logits)
            cache = out.cache
    torch.testing.assert_close(torch.cat(steps, 1), ref, rtol=0, atol=ATOL)


# ----------------------------------------------------------------------------------------------- error handling


@pytest.fixture(scope="module")
def small():
    params = _params()
    return params, _official(params, seed=5).state_dict()


def test_missing_key_names_it(small, tmp_path):
    params, state = small
    state = {k: v for k, v in state.items() if k != "cross_decoder.layers.1.ffn.fc2.weight"}
    ckpt, params_json = _save_raw(tmp_path, state, params)
    with pytest.raises(ValueError, match=r"missing keys.*cross_decoder\.layers\.1\.ffn\.fc2\.weight"):
        convert_official_yoco(ckpt, params_json, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unexpected_key_names_it(small, tmp_path):
    params, state = small
    state = dict(state, **{"self_decoder.layers.0.mixer.q_proj.bias": torch.zeros(32, dtype=torch.float64)})
    with pytest.raises(ValueError, match=r"unexpected keys.*self_decoder\.layers\.0\.mixer\.q_proj\.bias"):
        convert_official_yoco(*_save_raw(tmp_path, state, params), tmp_path / "out")
    # gated-retention weights with a sliding_window params.json: its gt_proj/g_proj have no place
    with pytest.raises(ValueError, match=r"sliding-window.*unexpected keys.*mixer\.g_proj\.weight"):
        official_state_dict_to_paperzoo(small[1], official_args_to_config(_params(sliding_window=4)))


def test_model_parallel_shard_is_refused(small, tmp_path):
    params, state = small
    shard = dict(state, **{"self_decoder.layers.0.mixer.q_proj.weight": torch.zeros(16, 32, dtype=torch.float64)})
    with pytest.raises(ValueError, match=r"model-parallel shard.*self_decoder\.layers\.0\.mixer\.q_proj\.weight "
                                         r"\(16, 32\) \(expected \(32, 32\)\)"):
        convert_official_yoco(*_save_raw(tmp_path, shard, params), tmp_path / "out")
    with pytest.raises(ValueError, match=r"model_parallel_size=2"):
        official_args_to_config(_params(model_parallel_size=2))


@pytest.mark.parametrize(
    "field, value",
    [("sliding_window", True), ("sliding_window", 0), ("n_layers", 3), ("dim", -1), ("norm_eps", "1e-5"),
     ("n_attn_kv_heads", 3), ("n_self_heads", 3), ("share_input_output_embed", True)],
)
def test_bad_params_name_the_field(field, value):
    with pytest.raises(ValueError, match=rf"{field}.*{value!r}|{value!r}.*{field}|\['{field}'\]"):
        official_args_to_config(_params(**{field: value}))


def test_params_defaults_and_ignored_fields():
    params = {k: v for k, v in _params().items() if k not in ("norm_eps", "rope_theta")}
    cfg = official_args_to_config(dict(params, max_batch_size=4, max_seq_len=1 << 20, load_checkpoint=True,
                                       model_parallel_size=1))
    assert (cfg.rms_norm_eps, cfg.rope_theta, cfg.self_decoder, cfg.sliding_window) == (
        1e-5, 10000.0, "gated_retention", None)
    with pytest.raises(ValueError, match=r"missing required YOCOArgs field\(s\) \['vocab_size'\]"):
        official_args_to_config({k: v for k, v in params.items() if k != "vocab_size"})


def test_tied_mismatch_and_fairseq_wrapper(small, tmp_path):
    params, state = small
    config = official_args_to_config(params, tie_word_embeddings=True)
    with pytest.raises(ValueError, match="output_projection.weight differs from embed_tokens.weight"):
        official_state_dict_to_paperzoo(state, config)
    # a fairseq checkpoint dict: the LanguageModel state_dict (decoder.model.*) under "model", plus other entries
    wrapped = {"model": {"decoder.model." + k: v for k, v in state.items()}, "optimizer_history": [], "cfg": {}}
    ckpt = tmp_path / "fairseq.pt"
    torch.save(wrapped, ckpt)
    model = convert_official_yoco(ckpt, params, tmp_path / "out", dtype="float32")
    assert not model.config.tie_word_embeddings
    assert {p.dtype for p in model.parameters()} == {torch.float32}


def test_unreadable_files(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a torch file")
    with pytest.raises(ValueError, match=r"notes\.txt.*weights_only=True"):
        convert_official_yoco(text, _params(), tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        convert_official_yoco(tmp_path / "missing.pth", _params(), tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="nope.json"):
        convert_official_yoco(text, tmp_path / "nope.json", tmp_path / "out")
    text.write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"notes\.txt: params\.json must hold a JSON object"):
        convert_official_yoco(text, text, tmp_path / "out")


def _save_raw(tmp_path: Path, state: dict, params: dict) -> tuple[Path, Path]:
    ckpt, params_json = tmp_path / "checkpoint.pth", tmp_path / "params.json"
    torch.save(state, ckpt)
    params_json.write_text(json.dumps(params))
    return ckpt, params_json


def test_cli_round_trip(tmp_path, capsys):
    """`paperzoo convert yoco` as a user runs it, then from_pretrained: the oracle's logits."""
    from paperzoo.cli import main
    from paperzoo.modeling.yoco import YOCOForCausalLM

    params = _params(sliding_window=WINDOW)
    oracle = _official(params, seed=3)
    ckpt, params_json = _save(tmp_path, oracle, params, prefix="decoder.model.")
    argv = ["convert", "yoco", "--checkpoint", str(ckpt), "--params", str(params_json), "--output",
            str(tmp_path / "hf")]
    assert main(argv) == 0
    assert "converted" in capsys.readouterr().out
    model = YOCOForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.float64).eval()
    tokens = _tokens(5)
    with torch.no_grad():
        torch.testing.assert_close(_logits(model, tokens), oracle(tokens), rtol=0, atol=ATOL)
    # the output exists now: exit status 2 and one line naming it, no traceback
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "Traceback" not in err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(_params(model_parallel_size=8)))
    assert main(["convert", "yoco", "--checkpoint", str(ckpt), "--params", str(bad), "--output",
                 str(tmp_path / "hf2")]) == 2
    assert "model_parallel_size=8" in capsys.readouterr().err and not (tmp_path / "hf2").exists()

"""paperzoo's RetNet against the official implementation: torchscale 0.3.0 (PyPI), through the checkpoint converter.

The oracle lives in `.oracle/` (installed by `make test` with `pip install --no-deps --target .oracle
torchscale==0.3.0`, never into the venv); its unused heavy imports (fairscale, timm) come from `tests/oracle_stubs`.
Both folders are put on sys.path only while this module's tests run.

What is compared (float64 models, logits [B, T, vocab]):
- a tiny torchscale `RetNetDecoder` is saved as `{"args": vars(RetNetConfig), "model": state_dict}` (with and without
  fairseq's "decoder." prefix), converted with `convert_torchscale_retnet`, and reloaded with `from_pretrained`;
- paperzoo full forward at T=12 (≤ chunk_size: paperzoo's parallel form) and T=45 (> chunk_size: its chunkwise form,
  with a ragged last chunk) against torchscale's parallel form;
- paperzoo decoding (prefill of one token with use_cache=True, then one token per call with `cache=`) against
  torchscale's recurrent form (the whole prefix passed each step with `incremental_state`, as its decoder expects)
  and against torchscale's parallel form.

Two regimes of RetNet's row normaliser R̃_nm = R_nm / max(|Σ_m R_nm|, 1):
- "init": torchscale's own init (q/k/v/g xavier gain 2^-2.5) gives |Σ_m R_nm| ≈ 0.1, so the clamp never divides;
  torchscale's parallel and recurrent forms are then the same function and paperzoo must match both.
- "clamp": W_q and W_k scaled by 8 so |Σ_m R_nm| > 1 (asserted with a probe). torchscale applies the normaliser in
  its PARALLEL form only; its recurrent form skips it, so the two differ by a per-row, per-head factor that the
  group RMSNorm removes only up to eps (measured here: 2.6e-5 at eps 1e-6, 4.3e-11 at eps 1e-12). paperzoo carries the
  normaliser in every form (a ones column appended to v yields Σ_m R_nm), i.e. it computes torchscale's parallel
  function everywhere. In this regime paperzoo's decoding is compared with torchscale's PARALLEL logits only.

Tolerances. torchscale rounds to fp32 even in a float64 model: RMSNorm does `x.float()` and `.type_as(x)` (the
pre-retention, per-head group and pre-FFN norms of each layer, and the final one), the GLU does
`act(x.float()).type_as(x)`, and the `angle`/`decay` buffers are computed in fp32 and then cast by `.double()`.
Each is a relative rounding of 2^-24 ≈ 6e-8. paperzoo computes all of these in float64. So two comparisons are made
for every case:
- against the untouched oracle: max|Δ| ≤ 5e-6 · max|logits|. Measured: 1.1e-7 to 3.1e-7 relative (4.7e-7 to 8.3e-6
  absolute). Almost all of it comes from the RMSNorm/GLU fp32 round trips, amplified by the layers' gain (largest with
  W_q, W_k scaled by 8); the fp32 buffers alone contribute < 1e-7 absolute. The bound leaves a 16× margin;
- against the same oracle with those fp32 round trips removed (`_exact_float64`: RMSNorm and GLU without the casts,
  buffers recomputed in float64 by torchscale's own formulas; no other change): max|Δ| ≤ 1e-12 (measured
  ≤ 5.7e-14 on logits of magnitude ≈ 3–76, i.e. float64 round-off).
That the two oracles agree to 5e-6 relative is also checked.
"""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path

import pytest
import torch
from torch import nn

from paperzoo import RetNetForCausalLM
from paperzoo.convert import convert_torchscale_retnet
from paperzoo.convert.torchscale_retnet import torchscale_args_to_config

ROOT = Path(__file__).resolve().parents[2]
ORACLE_DIR = ROOT / ".oracle"
STUBS_DIR = ROOT / "tests" / "oracle_stubs"

VOCAB, T_SHORT, T_LONG, BATCH = 101, 12, 45, 2
RTOL_FP32_ORACLE = 5e-6  # × max|logits|, against the untouched torchscale (fp32 round trips inside)
ATOL_EXACT = 1e-12  # against torchscale with its fp32 round trips removed

FIGURES: list[str] = []  # max|Δ| per comparison, printed at the end of the module (pytest -s shows them)


@pytest.fixture(scope="module")
def ts():
    """torchscale 0.3.0 from .oracle with the fairscale/timm stubs; sys.path and sys.modules restored afterwards."""
    if not (ORACLE_DIR / "torchscale" / "architecture" / "retnet.py").is_file():
        pytest.fail(
            f"the torchscale oracle is missing at {ORACLE_DIR / 'torchscale'}: run `make test` (it installs it with "
            "`.venv/bin/python -m pip install --no-deps --target .oracle torchscale==0.3.0`)"
        )
    added = [str(ORACLE_DIR), str(STUBS_DIR)]
    before = set(sys.modules)
    sys.path[:0] = added
    try:
        import torchscale.architecture.config as config
        import torchscale.architecture.retnet as retnet
        from torchscale.component import gate_linear_unit, multiscale_retention, rms_norm

        yield types.SimpleNamespace(
            RetNetConfig=config.RetNetConfig,
            RetNetDecoder=retnet.RetNetDecoder,
            RMSNorm=rms_norm.RMSNorm,
            GLU=gate_linear_unit.GLU,
            MultiScaleRetention=multiscale_retention.MultiScaleRetention,
            RetNetRelPos=retnet.RetNetRelPos,
        )
    finally:
        for path in added:
            sys.path.remove(path)
        for name in set(sys.modules) - before:
            if name.split(".")[0] in ("torchscale", "fairscale", "timm"):
                del sys.modules[name]
    print("\n[torchscale parity, max|Δlogits|]\n  " + "\n  ".join(FIGURES))


# name: (torchscale RetNetConfig overrides, factor on W_q and W_k, key prefix in the saved state_dict)
CASES = {
    "init-eps1e-6": (dict(layernorm_eps=1e-6), 1.0, ""),
    "clamp-eps1e-6": (dict(layernorm_eps=1e-6), 8.0, "decoder."),
    "clamp-eps1e-12-gelu-v128-tied-scaled-chunk8": (
        dict(layernorm_eps=1e-12, activation_fn="gelu", decoder_value_embed_dim=128, no_scale_embedding=False,
             share_decoder_input_output_embed=True, recurrent_chunk_size=8),
        8.0,
        "decoder.",
    ),
}


def _oracle_args(ts, **overrides):
    kwargs = dict(vocab_size=VOCAB, decoder_embed_dim=64, decoder_value_embed_dim=96, decoder_retention_heads=4,
                  decoder_ffn_embed_dim=96, decoder_layers=2, activation_fn="swish", recurrent_chunk_size=16)
    kwargs.update(overrides)
    return ts.RetNetConfig(**kwargs)


def _build_oracle(ts, args, qk_scale: float, seed: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ts.RetNetDecoder(args, embed_tokens=nn.Embedding(args.vocab_size, args.decoder_embed_dim))
    model = model.double().eval()
    with torch.no_grad():
        for layer in model.layers:
            layer.retention.q_proj.weight.mul_(qk_scale)
            layer.retention.k_proj.weight.mul_(qk_scale)
    return model


def _exact_float64(ts, model: nn.Module) -> nn.Module:
    """Remove torchscale's fp32 round trips (in place): RMSNorm and GLU compute in the input dtype, and the
    RetNetRelPos buffers are recomputed in float64 with torchscale's own formulas. Nothing else changes."""
    args = model.args
    h = args.decoder_retention_heads
    rel = model.retnet_rel_pos
    rel.angle = (1.0 / (10000 ** torch.linspace(0, 1, args.decoder_embed_dim // h // 2, dtype=torch.float64))
                 ).unsqueeze(-1).repeat(1, 2).flatten()
    rel.decay = torch.log(1 - 2 ** (-5 - torch.arange(h, dtype=torch.float64)))

    def rms_forward(self, x):
        out = self._norm(x)
        return out if self.weight is None else out * self.weight

    def glu_forward(self, x):  # GLU.forward less `.float()`/`.type_as()` (dropouts are p=0, eval)
        return self.fc2(self.activation_fn(self.fc1(x)) * self.gate(x))

    for module in model.modules():
        if isinstance(module, ts.RMSNorm):
            module.forward = types.MethodType(rms_forward, module)
        elif isinstance(module, ts.GLU):
            module.forward = types.MethodType(glu_forward, module)
    return model


def _max_row_sum(ts, model: nn.Module, tokens: torch.Tensor) -> float:
    """max |Σ_m R_nm| over layers, heads and rows in torchscale's parallel form (R = QKᵀ ⊙ D̃)."""
    seen = []
    for module in model.modules():
        if isinstance(module, ts.MultiScaleRetention):
            def probe(self, qr, kr, v, mask):
                seen.append((qr @ kr.transpose(-1, -2) * mask).sum(-1).abs().max().item())
                return ts.MultiScaleRetention.parallel_forward(self, qr, kr, v, mask)

            module.parallel_forward = types.MethodType(probe, module)
    try:
        model(tokens)
    finally:
        for module in model.modules():
            if isinstance(module, ts.MultiScaleRetention):
                del module.parallel_forward
    return max(seen)


def _oracle_logits(model, tokens) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        model.chunkwise_recurrent = False
        out = {f"parallel{T}": model(tokens[:, :T])[0] for T in (T_SHORT, T_LONG)}
        state, steps = {}, []
        for t in range(tokens.shape[1]):  # recurrent: whole prefix each call; the decoder keeps the last token
            steps.append(model(tokens[:, : t + 1], incremental_state=state)[0])
        out["recurrent"] = torch.cat(steps, 1)
    return out


def _paperzoo_logits(model, tokens) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        out = {f"parallel{T}": model(tokens[:, :T]).logits for T in (T_SHORT, T_LONG)}
        step = model(tokens[:, :1], use_cache=True)
        steps, cache = [step.logits], step.cache
        for t in range(1, tokens.shape[1]):
            step = model(tokens[:, t : t + 1], cache=cache, use_cache=True)
            steps.append(step.logits)
            cache = step.cache
        out["decode"] = torch.cat(steps, 1)
    return out


def _save_checkpoint(path: Path, args, state: dict, prefix: str = "") -> Path:
    torch.save({"args": vars(args), "model": {prefix + k: v for k, v in state.items()}}, path)
    return path


def _compare(case: str, oracle: str, got: torch.Tensor, ref: torch.Tensor, tol: float) -> None:
    diff = (got - ref).abs().max().item()
    FIGURES.append(f"{case:46s} {oracle:44s} {diff:.2e}  (tol {tol:.1e}, max|logits| {ref.abs().max():.2f})")
    assert diff <= tol, f"{case}: {oracle}: max|Δlogits| = {diff:.3e} > {tol:.1e}"


@pytest.mark.parametrize("case", list(CASES))
def test_converted_model_matches_torchscale(ts, case, tmp_path):
    overrides, qk_scale, prefix = CASES[case]
    args = _oracle_args(ts, **overrides)
    oracle = _build_oracle(ts, args, qk_scale, seed=list(CASES).index(case))
    ckpt = _save_checkpoint(tmp_path / "retnet.pt", args, oracle.state_dict(), prefix)

    returned = convert_torchscale_retnet(ckpt, tmp_path / "hf")
    assert isinstance(returned, RetNetForCausalLM)
    model = RetNetForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.float64).eval()
    cfg = model.config
    assert (cfg.hidden_size, cfg.value_dim, cfg.num_attention_heads, cfg.intermediate_size, cfg.num_hidden_layers) \
        == (64, args.decoder_value_embed_dim, 4, 96, 2)
    assert (cfg.hidden_act, cfg.rms_norm_eps, cfg.scale_embedding, cfg.tie_word_embeddings) == (
        args.activation_fn, args.layernorm_eps, not args.no_scale_embedding, args.share_decoder_input_output_embed)
    assert cfg.chunk_size == args.recurrent_chunk_size < T_LONG  # T_LONG runs paperzoo's chunkwise form
    if cfg.tie_word_embeddings:
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()

    gen = torch.Generator().manual_seed(1234)
    tokens = torch.randint(0, VOCAB, (BATCH, T_LONG), generator=gen)
    clamp = _max_row_sum(ts, oracle, tokens)
    if case.startswith("init"):
        assert clamp < 1, f"regime check: max|Σ R| = {clamp:.3f} should leave the clamp max(·, 1) inactive"
    else:
        assert clamp > 1, f"regime check: max|Σ R| = {clamp:.3f} should trigger the clamp max(·, 1)"
    # The comparison is only meaningful if the output depends on distant context.
    with torch.no_grad():
        other = tokens.clone()
        other[:, 0] = (other[:, 0] + 1) % VOCAB
        context_effect = (oracle(other)[0][:, -1] - oracle(tokens)[0][:, -1]).abs().max().item()
    assert context_effect > 1e-3, f"token 0 barely affects the logits at position {T_LONG - 1}: {context_effect:.2e}"

    got = _paperzoo_logits(model, tokens)
    plain = _oracle_logits(oracle, tokens)
    exact = _oracle_logits(_exact_float64(ts, oracle), tokens)
    scale = max(ref.abs().max().item() for ref in plain.values())
    for key in plain:
        _compare(case, f"torchscale-fp32-roundings: exact vs plain {key}", exact[key], plain[key],
                 RTOL_FP32_ORACLE * scale)
    for name, ref, tol in (("torchscale", plain, RTOL_FP32_ORACLE * scale), ("torchscale-exact64", exact, ATOL_EXACT)):
        _compare(case, f"{name} parallel T={T_SHORT}", got[f"parallel{T_SHORT}"], ref[f"parallel{T_SHORT}"], tol)
        _compare(case, f"{name} parallel T={T_LONG} (pz chunkwise)", got[f"parallel{T_LONG}"],
                 ref[f"parallel{T_LONG}"], tol)
        _compare(case, f"{name} parallel vs pz decode", got["decode"], ref[f"parallel{T_LONG}"], tol)
        if clamp < 1:  # torchscale's recurrent form skips the row normaliser: same function only without the clamp
            _compare(case, f"{name} recurrent vs pz decode", got["decode"], ref["recurrent"], tol)
    if clamp > 1:  # documentation of the regime, not a paperzoo property: torchscale's own forms disagree by eps
        gap = (exact["recurrent"] - exact[f"parallel{T_LONG}"]).abs().max().item()
        FIGURES.append(f"{case:46s} {'(info) torchscale-exact64 recurrent vs parallel':44s} {gap:.2e}")


# ----------------------------------------------------------------------------------------------- error handling


@pytest.fixture(scope="module")
def small_checkpoint(ts):
    args = _oracle_args(ts)
    return args, _build_oracle(ts, args, 1.0, seed=7).state_dict()


def test_missing_layer_weight_names_the_key(small_checkpoint, tmp_path):
    args, state = small_checkpoint
    state = {k: v for k, v in state.items() if k != "layers.1.ffn.fc2.weight"}
    ckpt = _save_checkpoint(tmp_path / "broken.pt", args, state, prefix="decoder.")
    with pytest.raises(ValueError, match=r"corrupt or incomplete checkpoint.*layers\.1\.ffn\.fc2\.weight"):
        convert_torchscale_retnet(ckpt, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unexpected_bias_is_rejected(small_checkpoint, tmp_path):
    args, state = small_checkpoint
    state = dict(state, **{"layers.0.retention.q_proj.bias": torch.zeros(64, dtype=torch.float64)})
    with pytest.raises(ValueError, match=r"unexpected keys.*layers\.0\.retention\.q_proj\.bias"):
        convert_torchscale_retnet(_save_checkpoint(tmp_path / "b.pt", args, state), tmp_path / "out")


def test_wrong_shape_is_rejected(small_checkpoint, tmp_path):
    args, state = small_checkpoint
    state = dict(state, **{"layers.0.ffn.fc1.weight": torch.zeros(97, 64, dtype=torch.float64)})
    with pytest.raises(ValueError, match=r"layers\.0\.ffn\.fc1\.weight \(97, 64\)"):
        convert_torchscale_retnet(_save_checkpoint(tmp_path / "s.pt", args, state), tmp_path / "out")


@pytest.mark.parametrize(
    "payload",
    [torch.zeros(3), {"model": {}}, {"args": {}}, ["args", "model"]],
    ids=["tensor", "no-args", "no-model", "list"],
)
def test_non_checkpoint_file(payload, tmp_path):
    path = tmp_path / "not_a_ckpt.pt"
    torch.save(payload, path)
    with pytest.raises(ValueError, match=r"not_a_ckpt\.pt.*'args'.*'model'"):
        convert_torchscale_retnet(path, tmp_path / "out")


def test_unreadable_or_pickled_file(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a torch file")
    with pytest.raises(ValueError, match=r"notes\.txt.*weights_only=True"):
        convert_torchscale_retnet(text, tmp_path / "out")
    pickled = tmp_path / "namespace.pt"  # an argparse.Namespace needs full unpickling: refused, never executed
    torch.save({"args": argparse.Namespace(decoder_layers=2), "model": {}}, pickled)
    with pytest.raises(ValueError, match=r"namespace\.pt.*weights_only=True"):
        convert_torchscale_retnet(pickled, tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        convert_torchscale_retnet(tmp_path / "missing.pt", tmp_path / "out")


@pytest.mark.parametrize(
    "field, value",
    [("deepnorm", True), ("multiway", True), ("layernorm_embedding", True), ("moe_freq", 2), ("use_xmoe", True),
     ("vocab_size", -1), ("activation_fn", "tanh"), ("no_output_layer", True)],
)
def test_unsupported_option_names_field(small_checkpoint, tmp_path, field, value):
    args, state = small_checkpoint
    ckpt = tmp_path / "opt.pt"
    torch.save({"args": dict(vars(args), **{field: value}), "model": state}, ckpt)
    with pytest.raises(ValueError, match=rf"{field}={value!r}"):
        convert_torchscale_retnet(ckpt, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
def test_rel_pos_buffers_accepted_for_large_head_counts(ts, dtype):
    """The checkpoint's angle/decay buffers are checked against torchscale's formulas: its own values (fp32, then
    cast with the model) must pass for every preset's head count, including 32 heads where fp32 rounds γ to 1."""
    from paperzoo.convert.torchscale_retnet import _check_buffers

    for heads in (2, 4, 16, 32):
        args = _oracle_args(ts, decoder_embed_dim=256 * heads, decoder_value_embed_dim=432 * heads,
                            decoder_retention_heads=heads)
        rel = ts.RetNetRelPos(args).to(dtype)
        state = {f"retnet_rel_pos.{k}": v for k, v in rel.state_dict().items()}
        _check_buffers(state, torchscale_args_to_config(vars(args)), "ckpt")
        state["retnet_rel_pos.decay"] = state["retnet_rel_pos.decay"] * 1.1  # another decay schedule
        with pytest.raises(ValueError, match="retnet_rel_pos.decay differs"):
            _check_buffers(state, torchscale_args_to_config(vars(args)), "ckpt")


def test_post_norm_rejected_and_subln_replicated():
    base = dict(vocab_size=VOCAB, decoder_embed_dim=64, decoder_value_embed_dim=96, decoder_retention_heads=4,
                decoder_ffn_embed_dim=96, decoder_layers=2)
    with pytest.raises(ValueError, match="decoder_normalize_before=False"):
        torchscale_args_to_config(dict(base, subln=False, decoder_normalize_before=False))
    # torchscale's RetNetConfig forces pre-norm whenever subln=True; its RetNet never reads subln otherwise.
    assert torchscale_args_to_config(dict(base, subln=True, decoder_normalize_before=False)).hidden_size == 64
    assert torchscale_args_to_config(dict(base, subln=False)).hidden_size == 64
    # recurrent_chunk_size maps to chunk_size only when it is a power of two (a compute choice; results agree).
    assert torchscale_args_to_config(dict(base, recurrent_chunk_size=32)).chunk_size == 32
    assert torchscale_args_to_config(dict(base, recurrent_chunk_size=24)).chunk_size == 64
    # absent fields take torchscale 0.3.0's defaults (activation "gelu", eps 1e-6, no embedding scale)
    cfg = torchscale_args_to_config(base)
    assert (cfg.hidden_act, cfg.rms_norm_eps, cfg.scale_embedding) == ("gelu", 1e-6, False)


def test_dtype_and_atomic_output(small_checkpoint, tmp_path, monkeypatch):
    args, state = small_checkpoint
    ckpt = _save_checkpoint(tmp_path / "c.pt", args, state)
    model = convert_torchscale_retnet(ckpt, tmp_path / "f32", dtype="float32")
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert RetNetForCausalLM.from_pretrained(tmp_path / "f32").dtype == torch.float32
    with pytest.raises(ValueError, match="not an empty directory"):
        convert_torchscale_retnet(ckpt, tmp_path / "f32")

    def failing_save(self, directory, **kwargs):
        (Path(directory) / "config.json").write_text("{")  # half-written, then the disk "fills up"
        raise OSError("No space left on device")

    monkeypatch.setattr(RetNetForCausalLM, "save_pretrained", failing_save)
    with pytest.raises(OSError, match="No space left"):
        convert_torchscale_retnet(ckpt, tmp_path / "half")
    assert not (tmp_path / "half").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt", "f32"]  # no temporary folder left behind


def test_cli_convert_then_export(small_checkpoint, tmp_path, capsys):
    """`paperzoo convert torchscale-retnet` and `paperzoo export`, as a user runs them."""
    from paperzoo.cli import main

    args, state = small_checkpoint
    ckpt = _save_checkpoint(tmp_path / "ts.pt", args, state, prefix="decoder.")
    assert main(["convert", "torchscale-retnet", "--checkpoint", str(ckpt), "--output", str(tmp_path / "hf")]) == 0
    converted = RetNetForCausalLM.from_pretrained(tmp_path / "hf").eval()
    assert main(["export", str(tmp_path / "hf"), str(tmp_path / "hub")]) == 0
    assert (tmp_path / "hub" / "modeling_retnet.py").exists() and (tmp_path / "hub" / "README.md").exists()
    exported = RetNetForCausalLM.from_pretrained(tmp_path / "hub").eval()
    tokens = torch.randint(0, converted.config.vocab_size, (1, 9))
    with torch.no_grad():
        torch.testing.assert_close(exported(tokens).logits, converted(tokens).logits, rtol=0, atol=0)
    # a bad checkpoint: exit status 2 and a message naming the file, no traceback
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    assert main(["convert", "torchscale-retnet", "--checkpoint", str(tmp_path / "junk.pt"),
                 "--output", str(tmp_path / "bad")]) == 2
    assert "junk.pt" in capsys.readouterr().err and not (tmp_path / "bad").exists()

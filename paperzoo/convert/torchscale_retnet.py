"""Convert an official torchscale RetNet checkpoint (microsoft/torchscale 0.3.0, `RetNetDecoder`) to paperzoo.

Input: a torch file holding `{"args": <dict of torchscale RetNetConfig fields>, "model": <RetNetDecoder state_dict>}`;
the state_dict keys may carry the `decoder.` prefix of a fairseq language model. It is read with
`torch.load(..., weights_only=True)`: tensors and plain containers only, never arbitrary pickles.

Output: `RetNetForCausalLM.save_pretrained(output_dir)`, written into a temporary sibling folder and renamed into
place, so that a failed conversion leaves nothing at `output_dir`.

Only the RetNet variant paperzoo implements is accepted (pre-norm RMSNorm blocks, GLU FFN, single-way, no MoE, no
DeepNet scaling, no embedding norm); every other option raises ValueError naming the torchscale field and its value.
Fields that do not change the function computed at inference (dropout, drop_path_rate, checkpoint_activations, fsdp,
chunkwise_recurrent, xpos_*, max_target_positions, moe_* while moe_freq is 0, ...) are ignored. `subln` is ignored
too: torchscale 0.3.0's RetNet never reads it (its config uses it only to force decoder_normalize_before=True,
which is replicated here).

Known difference: torchscale computes its decay buffer in fp32, which rounds γ_h to exactly 1 for heads h ≥ 20 (only
presets with more than 20 heads, e.g. retnet_65b); paperzoo keeps γ_h = 1 − 2^(−5−h). See `_check_buffers`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch

from ..configuration.retnet import RetNetConfig
from ..modeling.retnet import RetNetForCausalLM
from ._common import is_int, load_and_save

__all__ = ["TORCHSCALE_RETNET_DEFAULTS", "convert_torchscale_retnet", "torchscale_args_to_config",
           "torchscale_state_dict_to_paperzoo"]

# torchscale 0.3.0 `RetNetConfig.__init__` defaults of the fields read here (a field absent from "args" takes these).
TORCHSCALE_RETNET_DEFAULTS = {
    "decoder_embed_dim": 768,
    "decoder_value_embed_dim": 1280,
    "decoder_retention_heads": 3,
    "decoder_ffn_embed_dim": 1280,
    "decoder_layers": 12,
    "decoder_normalize_before": True,
    "activation_fn": "gelu",
    "no_scale_embedding": True,
    "layernorm_embedding": False,
    "moe_freq": 0,
    "use_xmoe": False,
    "deepnorm": False,
    "subln": True,
    "multiway": False,
    "share_decoder_input_output_embed": False,
    "no_output_layer": False,
    "layernorm_eps": 1e-6,
    "recurrent_chunk_size": 512,
    "vocab_size": -1,
}

# torchscale 0.3.0 `feedforward_network.get_activation_fn` (used by the GLU); the same names in transformers' ACT2FN
# are the same functions (F.relu, exact-erf F.gelu, F.silu).
_TORCHSCALE_ACTIVATIONS = ("relu", "gelu", "swish")

# Per-layer parameter names: torchscale DecoderLayer → paperzoo RetNetBlock.
_LAYER_MAP = {
    "retention.q_proj.weight": "retention.q_proj.weight",
    "retention.k_proj.weight": "retention.k_proj.weight",
    "retention.v_proj.weight": "retention.v_proj.weight",
    "retention.g_proj.weight": "retention.g_proj.weight",
    "retention.out_proj.weight": "retention.o_proj.weight",
    "retention_layer_norm.weight": "retention_norm.weight",
    "final_layer_norm.weight": "ffn_norm.weight",
    "ffn.fc1.weight": "ffn.gate_proj.weight",
    "ffn.gate.weight": "ffn.up_proj.weight",
    "ffn.fc2.weight": "ffn.down_proj.weight",
}
_TOP_MAP = {
    "embed_tokens.weight": "model.embed_tokens.weight",
    "layer_norm.weight": "model.norm.weight",
    "output_projection.weight": "lm_head.weight",
}
# RetNetRelPos buffers: fixed functions of the config, recomputed by paperzoo; checked when present, never loaded.
_BUFFERS = ("retnet_rel_pos.angle", "retnet_rel_pos.decay")
_LAYER_KEY = re.compile(r"layers\.(\d+)\.(.+)")


def _resolve_args(args: Mapping) -> dict:
    """torchscale's defaults for absent (or None) fields, then its RetNetConfig post-processing."""
    resolved = dict(TORCHSCALE_RETNET_DEFAULTS)
    resolved.update({k: v for k, v in args.items() if v is not None})
    # torchscale.architecture.config.RetNetConfig.__init__: deepnorm forces post-norm, subln forces pre-norm.
    if resolved["deepnorm"]:
        resolved["decoder_normalize_before"] = False
        resolved["subln"] = False
    if resolved["subln"]:
        resolved["decoder_normalize_before"] = True
        resolved["deepnorm"] = False
    return resolved


def _unsupported(source: str, field: str, value, why: str) -> ValueError:
    return ValueError(f"{source}: torchscale option {field}={value!r} is not supported by paperzoo's RetNet ({why})")


def torchscale_args_to_config(args: Mapping, source: str = "args") -> RetNetConfig:
    """Map torchscale RetNetConfig fields to a paperzoo RetNetConfig; ValueError naming the field for anything
    paperzoo does not implement or that cannot build a model. `source` names the checkpoint in messages."""
    if not isinstance(args, Mapping):
        raise ValueError(f"{source}: 'args' must be a dict of torchscale RetNetConfig fields, "
                         f"got {type(args).__name__}")
    a = _resolve_args(args)
    if a["deepnorm"]:
        raise _unsupported(source, "deepnorm", a["deepnorm"],
                           "DeepNet residual scaling x·(2L)^¼ + f(x) with post-norm")
    if a["multiway"]:
        raise _unsupported(source, "multiway", a["multiway"], "BEiT-3 multiway (two-expert) projections")
    if a["layernorm_embedding"]:
        raise _unsupported(source, "layernorm_embedding", a["layernorm_embedding"], "RMSNorm after the embedding")
    if not is_int(a["moe_freq"]) or a["moe_freq"] != 0:
        raise _unsupported(source, "moe_freq", a["moe_freq"], "mixture-of-experts FFN layers")
    if a["use_xmoe"]:
        raise _unsupported(source, "use_xmoe", a["use_xmoe"], "mixture-of-experts FFN layers")
    if not a["decoder_normalize_before"]:
        raise _unsupported(source, "decoder_normalize_before", a["decoder_normalize_before"], "post-norm blocks")
    if a["no_output_layer"]:
        raise _unsupported(source, "no_output_layer", a["no_output_layer"], "a causal LM needs output_projection")
    for field in ("vocab_size", "decoder_embed_dim", "decoder_value_embed_dim", "decoder_retention_heads",
                  "decoder_ffn_embed_dim", "decoder_layers"):
        if not is_int(a[field]) or a[field] <= 0:
            raise ValueError(f"{source}: torchscale field {field}={a[field]!r} must be a positive integer")
    act = a["activation_fn"]
    from transformers.activations import ACT2FN

    if act not in _TORCHSCALE_ACTIVATIONS or act not in ACT2FN:
        raise ValueError(f"{source}: torchscale field activation_fn={act!r} is not one of torchscale's GLU "
                         f"activations {_TORCHSCALE_ACTIVATIONS} (all of which are transformers ACT2FN names)")
    d, dv, h = a["decoder_embed_dim"], a["decoder_value_embed_dim"], a["decoder_retention_heads"]
    if d % h or (d // h) % 2:
        raise ValueError(f"{source}: decoder_embed_dim={d} / decoder_retention_heads={h} must be an even integer "
                         "(the key dimension per head, rotated in pairs)")
    if dv % h:
        raise ValueError(f"{source}: decoder_retention_heads={h} does not divide decoder_value_embed_dim={dv}")
    eps = a["layernorm_eps"]
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps >= 0:
        raise ValueError(f"{source}: torchscale field layernorm_eps={eps!r} must be a number >= 0")
    chunk = a["recurrent_chunk_size"]
    kwargs = {}
    if is_int(chunk) and chunk > 0 and not chunk & (chunk - 1):  # else paperzoo's default; results do not depend on it
        kwargs["chunk_size"] = chunk
    try:
        return RetNetConfig(
            vocab_size=a["vocab_size"],
            hidden_size=d,
            num_hidden_layers=a["decoder_layers"],
            num_attention_heads=h,
            intermediate_size=a["decoder_ffn_embed_dim"],
            value_size=dv,
            hidden_act=act,
            rms_norm_eps=float(eps),
            rope_theta=10000.0,  # hard-coded in torchscale's RetNetRelPos
            scale_embedding=not a["no_scale_embedding"],
            tie_word_embeddings=bool(a["share_decoder_input_output_embed"]),
            **kwargs,
        )
    except ValueError as exc:
        raise ValueError(f"{source}: the torchscale args do not make a valid paperzoo RetNetConfig: {exc}") from exc


def _expected_shapes(config: RetNetConfig) -> dict[str, tuple[int, ...]]:
    d, dv, f, vocab = config.hidden_size, config.value_dim, config.intermediate_size, config.vocab_size
    layer = {
        "retention.q_proj.weight": (d, d), "retention.k_proj.weight": (d, d),
        "retention.v_proj.weight": (dv, d), "retention.g_proj.weight": (dv, d),
        "retention.out_proj.weight": (d, dv),
        "retention_layer_norm.weight": (d,), "final_layer_norm.weight": (d,),
        "ffn.fc1.weight": (f, d), "ffn.gate.weight": (f, d), "ffn.fc2.weight": (d, f),
    }
    shapes = {"embed_tokens.weight": (vocab, d), "layer_norm.weight": (d,), "output_projection.weight": (vocab, d)}
    for i in range(config.num_hidden_layers):
        shapes.update({f"layers.{i}.{name}": shape for name, shape in layer.items()})
    return shapes


def _check_buffers(state: Mapping, config: RetNetConfig, source: str) -> None:
    """RetNetRelPos's angle/decay are not parameters: paperzoo recomputes them. A checkpoint whose buffers differ
    from torchscale's formulas (beyond rounding) was not made by the code this converter targets."""
    h = config.num_attention_heads
    kd = config.hidden_size // h
    # Exactly as torchscale computes them: in fp32 at construction (then cast with the model by .double()/.half()).
    # fp32 rounds 1 − 2^(−5−h) to exactly 1 for heads h ≥ 20 (decay 0, only in presets with more than 20 heads,
    # e.g. retnet_65b); paperzoo keeps log γ_h ≈ −2^(−5−h), so such heads differ by γ^n vs 1: a relative
    # 1 − exp(−n·2^(−25)) ≤ 2.4e-4 at n = 8192 for h = 20, less for higher heads.
    angle = (1.0 / (10000 ** torch.linspace(0, 1, kd // 2, dtype=torch.float32))).repeat_interleave(2)
    decay = torch.log(1 - 2 ** (-5 - torch.arange(h, dtype=torch.float32)))
    for key, ref in zip(_BUFFERS, (angle, decay)):
        if key not in state:
            continue
        got = state[key]
        if tuple(got.shape) != tuple(ref.shape):
            raise ValueError(f"{source}: corrupt or incomplete checkpoint: {key} has shape {tuple(got.shape)}, "
                             f"expected {tuple(ref.shape)} for the args")
        ok = got.is_floating_point()
        if ok:  # a few ulps of the stored dtype, and of fp32 (pow/log may differ by an ulp across platforms)
            rtol = max(4 * torch.finfo(got.dtype).eps, 1e-5)
            ok = torch.allclose(got.double(), ref.to(got.dtype).double(), rtol=rtol, atol=1e-9)
        if not ok:
            raise ValueError(f"{source}: {key} differs from torchscale 0.3.0's fixed values (rotation angles "
                             "10000^-linspace(0,1,K/2), decays log(1-2^(-5-h))); paperzoo cannot represent it")


def torchscale_state_dict_to_paperzoo(state: Mapping, config: RetNetConfig, source: str = "checkpoint"
                                      ) -> dict[str, torch.Tensor]:
    """Rename a torchscale RetNetDecoder state_dict (with or without fairseq's `decoder.` prefix) to
    RetNetForCausalLM's names. ValueError listing missing/unexpected keys and wrong shapes."""
    if not isinstance(state, Mapping) or not all(isinstance(k, str) for k in state):
        raise ValueError(f"{source}: 'model' must be a state_dict (a dict of str → tensor)")
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"{source}: 'model' entries that are not tensors: {sorted(bad)[:10]}")
    if state and all(k.startswith("decoder.") for k in state):
        state = {k[len("decoder."):]: v for k, v in state.items()}

    shapes = _expected_shapes(config)
    optional = set(_BUFFERS)
    if config.tie_word_embeddings:
        optional.add("output_projection.weight")  # tied to embed_tokens.weight; may be stored or not
    missing = sorted(k for k in shapes if k not in state and k not in optional)
    unexpected = sorted(k for k in state if k not in shapes and k not in optional)
    if missing or unexpected:
        parts = [f"missing keys {missing}"] if missing else []
        if unexpected:
            parts.append(f"unexpected keys {unexpected}")
        raise ValueError(f"{source}: corrupt or incomplete checkpoint (not a torchscale 0.3.0 RetNetDecoder with "
                         f"these args): {'; '.join(parts)}")
    wrong = [f"{k} {tuple(state[k].shape)} (expected {shapes[k]})"
             for k in shapes if k in state and tuple(state[k].shape) != shapes[k]]
    if wrong:
        raise ValueError(f"{source}: corrupt or incomplete checkpoint: shapes do not match the args: {wrong}")
    not_float = [k for k in shapes if k in state and not state[k].is_floating_point()]
    if not_float:
        raise ValueError(f"{source}: corrupt or incomplete checkpoint: non-floating weights {not_float}")
    _check_buffers(state, config, source)

    out = {}
    for key, tensor in state.items():
        if key in _BUFFERS:
            continue
        if key in _TOP_MAP:
            out[_TOP_MAP[key]] = tensor
        else:
            i, name = _LAYER_KEY.fullmatch(key).groups()
            out[f"model.layers.{i}.{_LAYER_MAP[name]}"] = tensor
    if config.tie_word_embeddings and "lm_head.weight" in out:
        if not torch.equal(out["lm_head.weight"], out["model.embed_tokens.weight"]):
            raise ValueError(f"{source}: corrupt checkpoint: share_decoder_input_output_embed=True but "
                             "output_projection.weight differs from embed_tokens.weight")
        del out["lm_head.weight"]
    return out


def _load_checkpoint(path: Path) -> tuple[Mapping, Mapping]:
    if not path.is_file():
        raise FileNotFoundError(f"torchscale checkpoint {str(path)!r} does not exist or is not a file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError (not a zip/torch file), EOFError, ...
        raise ValueError(
            f"{path}: cannot be read as a torchscale checkpoint: it must be a torch file (torch.save) holding "
            f"{{'args': dict, 'model': state_dict}}, readable with torch.load(weights_only=True) "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from exc
    if not isinstance(ckpt, Mapping) or "args" not in ckpt or "model" not in ckpt:
        what = f"a dict with keys {sorted(map(str, ckpt))[:10]}" if isinstance(ckpt, Mapping) else type(ckpt).__name__
        raise ValueError(f"{path}: not a torchscale checkpoint: expected a dict with 'args' (torchscale "
                         f"RetNetConfig fields) and 'model' (RetNetDecoder state_dict), got {what}")
    return ckpt["args"], ckpt["model"]


def convert_torchscale_retnet(checkpoint_path, output_dir, dtype=None) -> RetNetForCausalLM:
    """Convert a torchscale 0.3.0 RetNet checkpoint to a paperzoo `RetNetForCausalLM` saved at `output_dir`.

    Args:
        checkpoint_path: torch file `{"args": dict of torchscale RetNetConfig fields, "model": RetNetDecoder
            state_dict}` (keys may start with fairseq's "decoder."); read with weights_only=True.
        output_dir: where `save_pretrained` writes; must not exist or be empty. Written atomically.
        dtype: torch dtype (or its name) of the saved weights; None keeps the checkpoint's.

    Returns the converted model (eval mode, on CPU). Raises ValueError for unreadable or malformed checkpoints and
    for torchscale options paperzoo does not implement, FileNotFoundError for a missing file.
    """
    path = Path(checkpoint_path)
    output_dir = Path(output_dir)
    args, state = _load_checkpoint(path)
    config = torchscale_args_to_config(args, source=str(path))
    weights = torchscale_state_dict_to_paperzoo(state, config, source=str(path))
    return load_and_save(RetNetForCausalLM, config, weights, dtype, output_dir)

"""Convert an official YOCO checkpoint (microsoft/unilm `YOCO/`, the `YOCO` module of yoco/models/decoder/yoco.py) to
paperzoo.

Input: the weights and the model's `params.json` (the official `YOCOArgs` fields, as the released YOCO-3B-1M folder
ships them next to `checkpoint.pth`; a dict is accepted too). The weights file is read with
`torch.load(..., weights_only=True)`: tensors and plain containers only, never arbitrary pickles. It holds either
- the `YOCO` state_dict itself, as the released `checkpoint.pth` (the official `--load-ckpt` does
  `YOCO.load_state_dict(torch.load(path))`), keys `embed_tokens.weight`, `self_decoder.layers.0.mixer.q_proj.weight`...;
- or fairseq's nesting of it: keys prefixed `decoder.model.` (fairseq LanguageModel.decoder = YOCOModel, whose
  `.model` is the YOCO) or `model.` (a YOCOModel state_dict), possibly inside a fairseq checkpoint dict under
  "model". A fairseq training checkpoint also pickles optimizer and meter objects that weights_only refuses: save its
  "model" entry alone first.

Output: `YOCOForCausalLM.save_pretrained(output_dir)`, written into a temporary sibling folder and renamed into place,
so that a failed conversion leaves nothing at `output_dir`.

params.json: `dim`, `n_layers`, `hidden_dim`, `n_self_heads`, `n_attn_heads`, `n_attn_kv_heads`, `vocab_size` are
required (None K/V heads means as many as query heads, fairseq's `default()`); `rope_theta` (10000) and `norm_eps`
(1e-5) take YOCOArgs' defaults; `sliding_window` None selects gated retention, an integer C the sliding-window
self-decoder. `max_batch_size`, `max_seq_len` and `load_checkpoint` only size the official buffers and the rotary
table (paperzoo has no position limit): ignored. Any other field raises ValueError (YOCOArgs(**params) would too),
so does `model_parallel_size` > 1: such weights are per-rank shards of the Column/RowParallelLinear and
VocabParallelEmbedding matrices, which paperzoo does not merge. Shapes are checked against params.json, so a shard
passed with model_parallel_size 1 is refused as well.

Known differences: the gate normaliser 16 is fixed in the official GateRetention (paperzoo's gate_logit_normalizer).
The sliding window follows the official code from commit f4f7b27 ("fix swa", 2024-08-26) on: a query sees itself and
the C − 1 keys before it. The code before it (7402b0e, "yoco init") gave flash-attn `window_size=(C − 2, 0)`, i.e.
C − 1 keys: a model trained with that code converts with `sliding_window=C − 1` in the overrides. The official code
rounds to fp32 inside RMSNorm, rotary, gate cumsum and SwiGLU even in a float64 model; paperzoo does not.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

import torch

from ..configuration.yoco import YOCOConfig
from ..modeling.yoco import YOCOForCausalLM
from ._common import is_int, load_and_save

__all__ = ["YOCO_ARGS_DEFAULTS", "convert_official_yoco", "official_args_to_config",
           "official_state_dict_to_paperzoo"]

YOCO_REQUIRED = ("dim", "n_layers", "hidden_dim", "n_self_heads", "n_attn_heads", "n_attn_kv_heads", "vocab_size")
# YOCOArgs defaults of its optional fields (official yoco/models/decoder/yoco.py).
YOCO_ARGS_DEFAULTS = {
    "max_batch_size": 0,
    "max_seq_len": -1,
    "model_parallel_size": 1,
    "load_checkpoint": False,
    "rope_theta": 10000.0,
    "norm_eps": 1e-5,
    "sliding_window": None,
}
_IGNORED = ("max_batch_size", "max_seq_len", "load_checkpoint")  # runtime sizes: no effect on the function
# Key prefixes of the nestings the official code produces (fairseq LanguageModel → YOCOModel → YOCO), longest first.
PREFIXES = ("decoder.model.", "model.")

_FFN_MAP = {"ffn.fc1.weight": "ffn.gate_proj.weight", "ffn.gate.weight": "ffn.up_proj.weight",
            "ffn.fc2.weight": "ffn.down_proj.weight"}
_NORM_MAP = {"mixer_layer_norm.weight": "mixer_norm.weight", "final_layer_norm.weight": "ffn_norm.weight"}
_SELF_MIXER = {"gated_retention": ("q_proj", "k_proj", "v_proj", "g_proj", "gt_proj", "out_proj"),
               "sliding_window": ("q_proj", "k_proj", "v_proj", "out_proj")}
_CROSS_MIXER = ("q_proj", "out_proj")
_TOP_MAP = {
    "embed_tokens.weight": "model.embed_tokens.weight",
    "layer_norm.weight": "model.norm.weight",
    "output_projection.weight": "lm_head.weight",
    "cross_decoder.kv_layer_norm.weight": "model.shared_kv.norm.weight",
    "cross_decoder.k_proj.weight": "model.shared_kv.k_proj.weight",
    "cross_decoder.v_proj.weight": "model.shared_kv.v_proj.weight",
}
_LAYER_KEY = re.compile(r"(self_decoder|cross_decoder)\.layers\.(\d+)\.(.+)")


def _read_params(params, source: str) -> dict:
    if isinstance(params, Mapping):
        return dict(params)
    path = Path(params)
    if not path.is_file():
        raise FileNotFoundError(f"params file {str(path)!r} does not exist or is not a file")
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a JSON params file: {exc}") from None
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: params.json must hold a JSON object of YOCOArgs fields, got "
                         f"{type(loaded).__name__}")
    return loaded


def official_args_to_config(params: Mapping, source: str = "params", **overrides) -> YOCOConfig:
    """Map official YOCOArgs fields (params.json as a dict) to a paperzoo YOCOConfig; ValueError naming the field and
    its value for anything paperzoo does not implement or that cannot build a model. `overrides` are YOCOConfig
    fields set last (e.g. tie_word_embeddings, sliding_window, chunk_size, dtype)."""
    if not isinstance(params, Mapping):
        raise ValueError(f"{source}: params must be a dict of YOCOArgs fields, got {type(params).__name__}")
    unknown = sorted(str(k) for k in params if k not in YOCO_REQUIRED and k not in YOCO_ARGS_DEFAULTS)
    if unknown:
        raise ValueError(f"{source}: unknown YOCOArgs field(s) {unknown} (known: "
                         f"{', '.join((*YOCO_REQUIRED, *YOCO_ARGS_DEFAULTS))})")
    missing = [k for k in YOCO_REQUIRED if k not in params]
    if missing:
        raise ValueError(f"{source}: missing required YOCOArgs field(s) {missing}")
    a = dict(YOCO_ARGS_DEFAULTS)
    a.update(params)
    if a["n_attn_kv_heads"] is None:  # fairseq's default(): as many K/V heads as query heads
        a["n_attn_kv_heads"] = a["n_attn_heads"]
    for field in YOCO_REQUIRED:
        if not is_int(a[field]) or a[field] <= 0:
            raise ValueError(f"{source}: YOCOArgs field {field}={a[field]!r} must be a positive integer")
    if a["n_layers"] % 2:
        raise ValueError(f"{source}: YOCOArgs field n_layers={a['n_layers']} must be even (n_layers // 2 "
                         "self-decoder layers, then as many cross-decoder layers)")
    for heads in ("n_self_heads", "n_attn_heads"):
        if a["dim"] % a[heads] or (a["dim"] // a[heads]) % 2:
            raise ValueError(f"{source}: YOCOArgs field {heads}={a[heads]} must divide dim={a['dim']} into an even "
                             "head dimension (rotated in pairs)")
    if a["n_attn_heads"] % a["n_attn_kv_heads"]:
        raise ValueError(f"{source}: YOCOArgs field n_attn_kv_heads={a['n_attn_kv_heads']} must divide "
                         f"n_attn_heads={a['n_attn_heads']} (grouped-query attention)")
    mp = a["model_parallel_size"]
    if mp is not None and (not is_int(mp) or mp != 1):
        raise ValueError(f"{source}: YOCOArgs field model_parallel_size={mp!r} is not supported: the weights of a "
                         "model-parallel run are per-rank shards of the parallel linear/embedding matrices, which "
                         "paperzoo does not merge (convert a model_parallel_size=1 checkpoint)")
    window = a["sliding_window"]
    if window is not None and (not is_int(window) or window <= 0):
        raise ValueError(f"{source}: YOCOArgs field sliding_window={window!r} must be None (gated retention) or a "
                         "positive integer window")
    for field in ("rope_theta", "norm_eps"):
        value = a[field]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{source}: YOCOArgs field {field}={value!r} must be a number")
    kwargs = dict(
        vocab_size=a["vocab_size"],
        hidden_size=a["dim"],
        num_hidden_layers=a["n_layers"],
        intermediate_size=a["hidden_dim"],
        self_decoder="gated_retention" if window is None else "sliding_window",
        num_self_heads=a["n_self_heads"],
        sliding_window=window,
        num_attention_heads=a["n_attn_heads"],
        num_key_value_heads=a["n_attn_kv_heads"],
        gate_logit_normalizer=16.0,  # GateRetention's default argument; YOCO never passes another
        rms_norm_eps=float(a["norm_eps"]),
        rope_theta=float(a["rope_theta"]),
        tie_word_embeddings=False,  # the official fairseq build never ties (YOCO(share_input_output_embed=False))
    )
    kwargs.update(overrides)
    try:
        return YOCOConfig(**kwargs)
    except ValueError as exc:
        raise ValueError(f"{source}: the YOCOArgs do not make a valid paperzoo YOCOConfig: {exc}") from exc


def _expected_shapes(config: YOCOConfig) -> dict[str, tuple[int, ...]]:
    d, f, vocab = config.hidden_size, config.intermediate_size, config.vocab_size
    kv = d // config.num_attention_heads * config.num_key_value_heads
    ffn_norm = {"mixer_layer_norm.weight": (d,), "final_layer_norm.weight": (d,), "ffn.fc1.weight": (f, d),
                "ffn.gate.weight": (f, d), "ffn.fc2.weight": (d, f)}
    self_mixer = {f"mixer.{p}.weight": (d, d) for p in _SELF_MIXER[config.self_decoder]}
    if config.self_decoder == "gated_retention":
        self_mixer["mixer.gt_proj.weight"] = (config.num_self_heads, d)
    cross_mixer = {f"mixer.{p}.weight": (d, d) for p in _CROSS_MIXER}
    shapes = {"embed_tokens.weight": (vocab, d), "layer_norm.weight": (d,), "output_projection.weight": (vocab, d),
              "cross_decoder.kv_layer_norm.weight": (d,), "cross_decoder.k_proj.weight": (kv, d),
              "cross_decoder.v_proj.weight": (kv, d)}
    for i in range(config.num_hidden_layers // 2):
        shapes.update({f"self_decoder.layers.{i}.{n}": s for n, s in {**self_mixer, **ffn_norm}.items()})
        shapes.update({f"cross_decoder.layers.{i}.{n}": s for n, s in {**cross_mixer, **ffn_norm}.items()})
    return shapes


def strip_prefix(state: Mapping) -> dict:
    """The YOCO state_dict inside a fairseq checkpoint dict ("model") and/or under a fairseq key prefix."""
    if "model" in state and isinstance(state["model"], Mapping):
        state = state["model"]
    for prefix in PREFIXES:
        if state and all(isinstance(k, str) and k.startswith(prefix) for k in state):
            return {k[len(prefix):]: v for k, v in state.items()}
    return dict(state)


def _paperzoo_name(key: str) -> str:
    if key in _TOP_MAP:
        return _TOP_MAP[key]
    part, i, name = _LAYER_KEY.fullmatch(key).groups()
    layers = "self_layers" if part == "self_decoder" else "cross_layers"
    if name in _FFN_MAP:
        name = _FFN_MAP[name]
    elif name in _NORM_MAP:
        name = _NORM_MAP[name]
    elif name == "mixer.out_proj.weight":
        name = "mixer.o_proj.weight"
    return f"model.{layers}.{i}.{name}"  # other mixer names (q/k/v/g/gt_proj) are the same


def official_state_dict_to_paperzoo(state: Mapping, config: YOCOConfig, source: str = "checkpoint"
                                    ) -> dict[str, torch.Tensor]:
    """Rename an official YOCO state_dict (bare, or with fairseq's `decoder.model.` / `model.` prefix, or a fairseq
    checkpoint dict holding it under "model") to YOCOForCausalLM's names. ValueError naming missing/unexpected keys
    and wrong shapes. With config.tie_word_embeddings, output_projection.weight may be absent, else it must equal
    embed_tokens.weight."""
    if not isinstance(state, Mapping):
        raise ValueError(f"{source}: the weights must be a state_dict (a dict of str → tensor), got "
                         f"{type(state).__name__}")
    state = strip_prefix(state)
    if not all(isinstance(k, str) for k in state):
        raise ValueError(f"{source}: the weights must be a state_dict (a dict of str → tensor)")
    bad = sorted(k for k, v in state.items() if not isinstance(v, torch.Tensor))
    if bad:
        raise ValueError(f"{source}: entries that are not tensors: {bad[:10]}")

    shapes = _expected_shapes(config)
    optional = {"output_projection.weight"} if config.tie_word_embeddings else set()
    missing = sorted(k for k in shapes if k not in state and k not in optional)
    unexpected = sorted(k for k in state if k not in shapes)
    if missing or unexpected:
        parts = [f"missing keys {missing}"] if missing else []
        if unexpected:
            parts.append(f"unexpected keys {unexpected}")
        kind = config.self_decoder.replace("_", "-")
        raise ValueError(f"{source}: corrupt or incomplete checkpoint (not an official YOCO with a {kind} "
                         f"self-decoder and these params): {'; '.join(parts)}")
    wrong = [f"{k} {tuple(state[k].shape)} (expected {shapes[k]})"
             for k in shapes if k in state and tuple(state[k].shape) != shapes[k]]
    if wrong:
        raise ValueError(f"{source}: shapes do not match params.json (a model-parallel shard? paperzoo needs the "
                         f"merged model_parallel_size=1 weights): {wrong[:10]}")
    not_float = [k for k in shapes if k in state and not state[k].is_floating_point()]
    if not_float:
        raise ValueError(f"{source}: corrupt checkpoint: non-floating weights {not_float[:10]}")

    out = {_paperzoo_name(k): t for k, t in state.items()}
    if config.tie_word_embeddings and "lm_head.weight" in out:
        if not torch.equal(out["lm_head.weight"], out["model.embed_tokens.weight"]):
            raise ValueError(f"{source}: tie_word_embeddings=True but output_projection.weight differs from "
                             "embed_tokens.weight")
        del out["lm_head.weight"]
    return out


def _load_weights(path: Path) -> Mapping:
    if not path.is_file():
        raise FileNotFoundError(f"YOCO checkpoint {str(path)!r} does not exist or is not a file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError (not a zip/torch file), EOFError, ...
        raise ValueError(
            f"{path}: cannot be read as a YOCO checkpoint: it must be a torch file (torch.save) holding the YOCO "
            f"state_dict, readable with torch.load(weights_only=True); from a fairseq training checkpoint save its "
            f"'model' entry alone ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from exc
    if not isinstance(ckpt, Mapping):
        raise ValueError(f"{path}: not a YOCO checkpoint: expected a state_dict, got {type(ckpt).__name__}")
    return ckpt


def _ties(state: Mapping) -> bool:
    """Tied when the checkpoint stores no output projection or the embedding itself there (YOCO with
    share_input_output_embed=True saves both keys, one tensor)."""
    emb, out = state.get("embed_tokens.weight"), state.get("output_projection.weight")
    if out is None:
        return emb is not None
    return (isinstance(emb, torch.Tensor) and isinstance(out, torch.Tensor) and emb.shape == out.shape
            and torch.equal(emb, out))


def convert_official_yoco(checkpoint, params, output_dir, dtype=None) -> YOCOForCausalLM:
    """Convert an official YOCO checkpoint to a paperzoo `YOCOForCausalLM` saved at `output_dir`.

    Args:
        checkpoint: torch file with the YOCO state_dict (the released `checkpoint.pth`; keys may carry fairseq's
            "decoder.model." / "model." prefix, or sit under "model"); read with weights_only=True.
        params: the official params.json (path) or its dict of YOCOArgs fields.
        output_dir: where `save_pretrained` writes; must not exist or be empty. Written atomically.
        dtype: torch dtype (or its name) of the saved weights; None keeps the checkpoint's.

    Returns the converted model (eval mode, on CPU). Raises ValueError for unreadable or malformed checkpoints and
    params and for options paperzoo does not implement, FileNotFoundError for a missing file.
    """
    path = Path(checkpoint)
    output_dir = Path(output_dir)
    source = str(params) if not isinstance(params, Mapping) else "params"
    params = _read_params(params, source)
    official_args_to_config(params, source=source)  # params errors before the (large) weights are read
    state = strip_prefix(_load_weights(path))
    config = official_args_to_config(params, source=source, tie_word_embeddings=_ties(state))
    weights = official_state_dict_to_paperzoo(state, config, source=str(path))
    return load_and_save(YOCOForCausalLM, config, weights, dtype, output_dir)

"""What every checkpoint converter shares: argument checks, the output dtype and the atomic write of the folder."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path

import torch


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def resolve_dtype(dtype, state: Mapping) -> torch.dtype:
    """The dtype to save in: `dtype` (a torch dtype or its name), else that of the converted embeddings."""
    if dtype is None:
        emb = state.get("model.embed_tokens.weight")
        return emb.dtype if emb is not None and emb.is_floating_point() else torch.float32
    if isinstance(dtype, str):
        resolved = getattr(torch, dtype.removeprefix("torch."), None)
        if not isinstance(resolved, torch.dtype):
            raise ValueError(f"dtype={dtype!r} is not a torch dtype name (e.g. 'float32', 'bfloat16')")
        dtype = resolved
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype={dtype!r} must be a floating torch dtype")
    return dtype


def save_atomically(model, output_dir: Path) -> None:
    """model.save_pretrained into a temporary sibling folder, renamed into place: a failure leaves nothing at
    `output_dir` (which must not exist or be empty)."""
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())):
        raise ValueError(f"output directory {str(output_dir)!r} already exists and is not an empty directory; "
                         "remove it or choose another")
    parent = output_dir.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = parent / f".{output_dir.name}.tmp-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        model.save_pretrained(tmp)
        if output_dir.is_dir():  # empty (checked above)
            output_dir.rmdir()
        os.rename(tmp, output_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_and_save(model_class, config, weights: dict, dtype, output_dir: Path):
    """Build `model_class(config)` from the converted `weights` (cast to `dtype`, see resolve_dtype), check that they
    fill every parameter, save it atomically to `output_dir`; returns the model (eval mode, on CPU)."""
    dtype = resolve_dtype(dtype, weights)
    weights = {k: v.to(dtype) for k, v in weights.items()}
    with torch.device("meta"):  # no random init of a model about to be overwritten
        model = model_class(config)
    result = model.load_state_dict(weights, strict=False, assign=True)
    missing = [k for k in result.missing_keys if not (config.tie_word_embeddings and k == "lm_head.weight")]
    if missing or result.unexpected_keys:  # a mapping bug, not a user error
        raise RuntimeError(f"paperzoo {model_class.__name__} parameter names changed: missing {missing}, "
                           f"unexpected {result.unexpected_keys}")
    if config.tie_word_embeddings:
        model.lm_head.weight = model.get_input_embeddings().weight
    left = [n for n, t in (*model.named_parameters(), *model.named_buffers()) if t.is_meta]
    if left:
        raise RuntimeError(f"tensors left uninitialised after conversion: {left}")
    model.config.dtype = dtype
    model.eval()
    save_atomically(model, output_dir)
    return model

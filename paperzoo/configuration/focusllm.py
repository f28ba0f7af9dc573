"""FocusLLM configuration (Li et al., "FocusLLM: Precise Understanding of Long Context by Dynamic Condensing",
arXiv 2408.11745; official code: leezythu/FocusLLM, `configuration_llama.py`): a decoder-only LM, unchanged, plus
the sizes of the memory chunks, the local window and the dynamic prompt."""

from __future__ import annotations

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from .causal_lm import check_causal_lm_config

CANDIDATE_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")
DECODINGS = ("sliding", "growing")


def positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name}={value!r} must be a positive integer")
    return value


class FocusLLMConfig(PreTrainedConfig):
    r"""Configuration of a FocusLLM wrapper around a decoder-only causal LM (official name in brackets).

    Args:
        base_config (`PreTrainedConfig` or `dict`): the base LM's config (any `AutoModelForCausalLM` model with
            separate attention projections: Llama, Mistral, Qwen2/3, Gemma...). Default: a LLaMA-2-7B-shaped
            `LlamaConfig` (4,096 positions).
        base_model_name_or_path (`str`, *optional*): where the base weights come from (a Hub id or a folder).
            `save_pretrained` then writes the candidate projections only, and `from_pretrained` loads the base from
            here; None saves and loads the whole model.
        chunk_size (`int`) [memory_stride]: tokens per memory chunk; each chunk yields one candidate token per layer.
        local_window (`int`) [local_window]: the last tokens the base model reads itself, after the candidates.
        dynamic_prompt_len (`int`): the suffix of the local window appended (after BOS) to every chunk; the
            candidate is its last token. A shorter local window uses all of it.
        min_len_for_focus (`int`, *optional*): inputs shorter than this run through the base model alone, with full
            attention (the official code: 4096 for LLaMA-2). None: focus as soon as there is memory, i.e. for
            inputs longer than `local_window`.
        candidate_modules (`list[str]`) [beacon_param]: the attention projections that get a trainable candidate
            copy in every layer (the last layer's q/o excepted: they never reach the output).
        chunk_batch_size (`int`, *optional*): at most this many chunk rows per forward of the base model (bounds
            memory); None encodes all chunks of a call as one batch, 1 is the official sequential loop.
        decoding (`str`): how a cache continues after a prediction with memory. "sliding": every token is predicted
            as from scratch (local window and dynamic prompt are the last tokens; full chunks' keys/values are
            reused and each chunk re-reads the prompt: k·(dynamic_prompt_len + 1) tokens per step).
            "growing" (the official code): the memory split and the prompt's start stay where the first prediction
            put them, new tokens extend the local window and the prompt, and each chunk reads 2 tokens per step;
            step t then equals a full forward with local_window + t and dynamic_prompt_len + t.

    Ids and vocabulary are the base model's: `vocab_size` reads and writes `base_config.vocab_size`, and the
    bos/eos/pad ids default to the base config's.
    """

    model_type = "paperzoo_focusllm"
    keys_to_ignore_at_inference = ["cache"]
    # the paper's base: LLaMA-2 (4,096 positions, local window 2,048)
    sub_configs_defaults = {"base_config": SubConfigSpec(config_class=AutoConfig, model_type="llama",
                                                         init_kwargs={"max_position_embeddings": 4096})}

    base_config: dict | PreTrainedConfig | None = None
    base_model_name_or_path: str | None = None
    chunk_size: int = 2048
    local_window: int = 2048
    dynamic_prompt_len: int = 512
    min_len_for_focus: int | None = None
    candidate_modules: list[str] | tuple[str, ...] = CANDIDATE_MODULES
    chunk_batch_size: int | None = None
    decoding: str = "sliding"
    use_cache: bool = True
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self.candidate_modules = list(self.candidate_modules)
        for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
            if getattr(self, name) is None:
                setattr(self, name, getattr(self.base_config, name, None))
        self.validate()

    def validate(self):
        """ValueError naming the first field that cannot work with this base model."""
        check_causal_lm_config("base_config", self.base_config)
        for name in ("chunk_size", "local_window", "dynamic_prompt_len"):
            positive_int(name, getattr(self, name))
        for name in ("min_len_for_focus", "chunk_batch_size"):
            if getattr(self, name) is not None:
                positive_int(name, getattr(self, name))
        limit = getattr(self.base_config, "max_position_embeddings", None)
        if limit is not None and self.local_window >= limit:
            raise ValueError(f"local_window={self.local_window} leaves no position for a candidate: the base model "
                             f"has max_position_embeddings={limit}")
        if limit is not None and self.min_len_for_focus is not None and self.min_len_for_focus > limit + 1:
            raise ValueError(f"min_len_for_focus={self.min_len_for_focus} lets inputs of up to "
                             f"{self.min_len_for_focus - 1} tokens run with full attention, beyond the base model's "
                             f"max_position_embeddings={limit}")
        if self.decoding not in DECODINGS:
            raise ValueError(f"decoding={self.decoding!r} is not one of {DECODINGS}")
        if not self.candidate_modules or len(set(self.candidate_modules)) != len(self.candidate_modules) \
                or not all(isinstance(m, str) and m for m in self.candidate_modules):
            raise ValueError(f"candidate_modules={self.candidate_modules!r} must be a non-empty list of distinct "
                             f"projection names, e.g. {list(CANDIDATE_MODULES)}")
        super_validate = getattr(super(), "validate", None)
        if super_validate is not None:
            super_validate()

    @property
    def vocab_size(self) -> int:
        return self.base_config.vocab_size

    @vocab_size.setter
    def vocab_size(self, value: int):
        self.base_config.vocab_size = value

    def get_text_config(self, decoder=None, encoder=None) -> PreTrainedConfig:
        return self.base_config


__all__ = ["FocusLLMConfig"]

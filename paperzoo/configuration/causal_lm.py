"""The check shared by the configs that wrap a decoder-only causal LM (FocusLLM's base model, E4SRec's encoder)."""

from __future__ import annotations

from transformers import PreTrainedConfig


def check_causal_lm_config(name: str, config) -> None:
    """ValueError naming `name` unless `config` is the config of a decoder-only causal LM that AutoModelForCausalLM
    knows (Llama, Mistral, Qwen2/3, Gemma, ...)."""
    from transformers import MODEL_FOR_CAUSAL_LM_MAPPING

    if not isinstance(config, PreTrainedConfig) or config.is_encoder_decoder \
            or type(config) not in MODEL_FOR_CAUSAL_LM_MAPPING:
        raise ValueError(f"{name}={type(config).__name__} (model_type={getattr(config, 'model_type', None)!r}) is not "
                         f"the config of a decoder-only causal LM registered with AutoModelForCausalLM")


__all__ = ["check_causal_lm_config"]

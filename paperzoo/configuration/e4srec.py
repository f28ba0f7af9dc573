"""E4SRec configuration (Li et al., "E4SRec: An Elegant Effective Efficient Extensible Solution of Large Language
Models for Sequential Recommendation", arXiv 2312.02443), as the LLM-based baseline of the CE/SCE papers (Xu et al.,
arXiv 2402.06216 / 2408.14238): a decoder-only LLM reads projected item-id embeddings, its output is projected back
to the item width and scored against the item table, trained with the losses of the sequential recommenders."""

from __future__ import annotations

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from .causal_lm import check_causal_lm_config
from .seqrec import SequentialRecommenderConfig

# the default LLM: SmolLM2-135M-Instruct's shape (paperzoo.data.local_llm), the LLM every paperzoo LLM pipeline uses
_SMOLLM2_135M = {"hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
                 "num_key_value_heads": 3, "max_position_embeddings": 8192, "rope_theta": 100000.0,
                 "rms_norm_eps": 1e-5, "vocab_size": 49152, "tie_word_embeddings": True}


class E4SRecConfig(SequentialRecommenderConfig):
    r"""E4SRec: item-id embeddings (width `hidden_size`, d) → `input_proj` (d → the LLM's width D) → the LLM over the
    window of items (no text tokens; the LLM's own token embeddings are not used and not kept) → `output_proj` (D → d)
    → scores ⟨h_t, E[j]⟩ with the item table. See SequentialRecommenderConfig for the shared fields (num_items,
    max_length, hidden_size = d, loss_type, ...); `hidden_dropout_prob` is the dropout on the item embeddings.

    Args:
        base_config (`PreTrainedConfig` or `dict`): the LLM's config (any decoder-only model registered with
            `AutoModelForCausalLM` whose `AutoModel` takes `inputs_embeds`: Llama, Mistral, Qwen2/3, Gemma, ...).
            Default: SmolLM2-135M-Instruct's shape (30 layers, width 576). `E4SRecForSequentialRecommendation.
            from_llm` takes it, and the weights, from a pretrained model.
    """

    model_type = "paperzoo_e4srec"
    sub_configs_defaults = {"base_config": SubConfigSpec(config_class=AutoConfig, model_type="llama",
                                                         init_kwargs=_SMOLLM2_135M)}

    base_config: dict | PreTrainedConfig | None = None
    max_length: int = 20  # LLM forwards are costly: a shorter window than the small recommenders' 50

    def validate(self):
        check_causal_lm_config("base_config", self.base_config)
        limit = getattr(self.base_config, "max_position_embeddings", None)
        if limit is not None and self.max_length > limit:
            raise ValueError(f"max_length={self.max_length} is beyond the LLM's max_position_embeddings={limit}")
        super().validate()


__all__ = ["E4SRecConfig"]

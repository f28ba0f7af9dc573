"""E4SRec (Li et al., "E4SRec: An Elegant Effective Efficient Extensible Solution of Large Language Models for
Sequential Recommendation", arXiv 2312.02443) as the CE/SCE papers' LLM-based baseline (Xu et al., arXiv 2402.06216 /
2408.14238): a decoder-only LLM is the sequence encoder over item ids.

    x_t = W_in · E[item_t]                (E: the item table, width d, e.g. a trained SASRec's; W_in: d → D)
    g_t = LLM(x_1..x_t)                   (any decoder-only AutoModel over inputs_embeds, causal, padding masked)
    h_t = W_out · g_t;  s_j = ⟨h_t, E[j]⟩ (W_out: D → d; scores tied to the item table)

Every loss of the sequential recommenders (full-softmax CE, SCE, BCE, ...) and full ranking come from
SequentialRecommenderPreTrainedModel. The LLM is tuned with LoRA (paperzoo.modeling.e4srec_training.lora_config:
adapters on its attention projections, the item table and both projections trained in full and saved with them).

Differences from the official E4SRec: the scores are tied to the item table through W_out (E4SRec: a separate
D → N linear layer), so that the sampled losses (SCE, BCE) score any item by its embedding; the LLM reads the items
alone, without E4SRec's constant instruction text around them; the LLM's token embeddings are not used, so they are
not kept.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers import AutoModel, PreTrainedModel

from ..configuration.e4srec import E4SRecConfig
from .seqrec import SequentialRecommenderPreTrainedModel


class E4SRecForSequentialRecommendation(SequentialRecommenderPreTrainedModel):
    """E4SRec around any decoder-only LLM. `from_llm(llm, num_items=...)` builds one from a pretrained LLM (id,
    folder, model object, or None: paperzoo's offline SmolLM2-135M-Instruct); from a config alone the LLM is built
    from `config.base_config` with random weights."""

    config_class = E4SRecConfig  # post_init takes _no_split_modules from the LLM's (its decoder layers)
    supports_gradient_checkpointing = True  # the LLM's decoder layers are GradientCheckpointingLayers

    def __init__(self, config: E4SRecConfig):
        super().__init__(config)
        d, D = config.hidden_size, config.base_config.hidden_size
        self.item_embeddings = nn.Embedding(config.num_items + 1, d, padding_idx=0)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.input_proj = nn.Linear(d, D)
        self.llm = AutoModel.from_config(config.base_config)
        self.llm.set_input_embeddings(None)  # the LLM reads projected items, never its token ids
        self.output_proj = nn.Linear(D, d)
        self.post_init()

    @classmethod
    def from_llm(cls, llm: str | Path | PreTrainedModel | None = None, num_items: int | None = None,
                 item_embeddings: torch.Tensor | nn.Embedding | None = None,
                 **config) -> E4SRecForSequentialRecommendation:
        """E4SRec over a pretrained LLM: `llm` is a Hub id or folder, a loaded causal LM (or its decoder), or None
        (paperzoo's offline SmolLM2-135M-Instruct). `item_embeddings` ([N + 1, d] with row 0 the padding, or an
        nn.Embedding such as a trained SASRec's `item_embeddings`) initialises the item table and sets num_items
        and hidden_size = d. Other keyword arguments go to E4SRecConfig (loss_type, max_length, ...)."""
        if llm is None:
            from ..data import local_llm

            llm, _ = local_llm()
        elif isinstance(llm, (str, Path)):
            from transformers import AutoModelForCausalLM

            llm = AutoModelForCausalLM.from_pretrained(llm, dtype="auto")
        if not isinstance(llm, PreTrainedModel):
            raise ValueError(f"llm={type(llm).__name__} is not a transformers model (a Hub id, a folder, a "
                             f"PreTrainedModel or None)")
        decoder = llm.base_model  # a causal LM's decoder (Llama: .model), or the decoder itself
        if item_embeddings is not None:
            table = item_embeddings.weight if isinstance(item_embeddings, nn.Embedding) else item_embeddings
            if table.dim() != 2 or (num_items is not None and table.shape[0] != num_items + 1):
                raise ValueError(f"item_embeddings must be [num_items + 1, d] (row 0 = padding); got shape "
                                 f"{tuple(table.shape)} with num_items={num_items}")
            num_items, config["hidden_size"] = table.shape[0] - 1, table.shape[1]
        if num_items is None:
            raise ValueError("num_items is needed (or item_embeddings, whose rows give it)")
        model = cls(E4SRecConfig(base_config=decoder.config, num_items=num_items, **config))
        missing, unexpected = model.llm.load_state_dict(decoder.state_dict(), strict=False)
        token_table = {f"{name}.weight" for name, m in decoder.named_modules() if m is decoder.get_input_embeddings()}
        if set(missing) or set(unexpected) - token_table:
            raise ValueError(f"the LLM's weights do not fit its own config: missing {missing}, unexpected "
                             f"{sorted(set(unexpected) - token_table)}")
        if item_embeddings is not None:
            with torch.no_grad():
                model.item_embeddings.weight.copy_(table)
        return model.to(decoder.dtype)

    def encode(self, input_ids: torch.LongTensor, mask: torch.Tensor) -> torch.Tensor:
        B, T = input_ids.shape
        if T > self.config.max_length:
            raise ValueError(f"input_ids has {T} positions; max_length={self.config.max_length} (keep the last items)")
        x = self.input_proj(self.dropout(self.item_embeddings(input_ids)))  # [B, T, D]
        positions = (mask.long().cumsum(1) - 1).clamp(min=0)  # left padding: each row starts at position 0
        g = self.llm(inputs_embeds=x, attention_mask=mask.long(), position_ids=positions,
                     use_cache=False).last_hidden_state  # [B, T, D]
        return self.output_proj(g) * mask[..., None]  # [B, T, d]; padded positions are never scored


__all__ = ["E4SRecForSequentialRecommendation"]

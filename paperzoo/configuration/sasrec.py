"""SASRec configuration (Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018; as trained by the
CE/SCE papers, MTandHJ/CE-SCE-LLMRec `SASRec/`)."""

from __future__ import annotations

from .seqrec import SequentialRecommenderConfig, positive_int


class SASRecConfig(SequentialRecommenderConfig):
    r"""SASRec: learned positions, `num_hidden_layers` pre-LN causal self-attention blocks with point-wise FFN,
    item embeddings scaled by √d, scores tied to the item table. See SequentialRecommenderConfig for the shared
    fields (num_items, max_length, loss_type, ...).

    Args:
        num_hidden_layers (`int`) [num-blocks], num_attention_heads (`int`) [num-heads]: 2 and 1 officially.
        attention_dropout (`float`, *optional*): None: hidden_dropout_prob.
        layer_norm_eps (`float`): 1e-8 (the original SASRec).
    """

    model_type = "paperzoo_sasrec"

    num_hidden_layers: int = 2
    num_attention_heads: int = 1
    attention_dropout: float | None = None
    layer_norm_eps: float = 1e-8

    def __post_init__(self, **kwargs):
        if self.attention_dropout is None:
            self.attention_dropout = self.hidden_dropout_prob
        super().__post_init__(**kwargs)

    def validate(self):
        positive_int("num_hidden_layers", self.num_hidden_layers)
        positive_int("num_attention_heads", self.num_attention_heads)
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"num_attention_heads={self.num_attention_heads} does not divide "
                             f"hidden_size={self.hidden_size}")
        if not 0 <= self.attention_dropout < 1:
            raise ValueError(f"attention_dropout={self.attention_dropout!r} must be in [0, 1)")
        if not self.layer_norm_eps > 0:
            raise ValueError(f"layer_norm_eps={self.layer_norm_eps!r} must be > 0")
        super().validate()


__all__ = ["SASRecConfig"]

"""GRU4Rec configuration (Hidasi et al., "Session-based Recommendations with Recurrent Neural Networks", ICLR 2016; as
trained by the CE/SCE papers, MTandHJ/CE-SCE-LLMRec `GRU4Rec/`)."""

from __future__ import annotations

from .seqrec import SequentialRecommenderConfig, positive_int


class GRU4RecConfig(SequentialRecommenderConfig):
    r"""GRU4Rec: item embeddings (dropout) → GRU → Linear to the embedding size, scores tied to the item table. See
    SequentialRecommenderConfig for the shared fields.

    Args:
        num_hidden_layers (`int`): GRU layers (1 officially).
        intermediate_size (`int`, *optional*): the GRU's hidden size; None: hidden_size.
    """

    model_type = "paperzoo_gru4rec"

    num_hidden_layers: int = 1
    intermediate_size: int | None = None

    def __post_init__(self, **kwargs):
        if self.intermediate_size is None:
            self.intermediate_size = self.hidden_size
        super().__post_init__(**kwargs)

    def validate(self):
        positive_int("num_hidden_layers", self.num_hidden_layers)
        positive_int("intermediate_size", self.intermediate_size)
        super().validate()


__all__ = ["GRU4RecConfig"]

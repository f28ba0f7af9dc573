"""Caser configuration (Tang & Wang, "Personalized Top-N Sequential Recommendation via Convolutional Sequence
Embedding", WSDM 2018; as trained by the CE/SCE papers, MTandHJ/CE-SCE-LLMRec `Caser/`)."""

from __future__ import annotations

from .seqrec import SequentialRecommenderConfig, positive_int


class CaserConfig(SequentialRecommenderConfig):
    r"""Caser: at each position the last `max_length` (L) items as an L × d "image", horizontal convolutions of
    heights 1..L (max-pooled over time) and vertical ones (over the L rows), then a fully connected layer to d;
    scores tied to the item table. No user embedding (the model reads the item history only). See
    SequentialRecommenderConfig for the shared fields; `max_length` is L (official 5).

    Args:
        num_vertical_filters (`int`) [num-vert]: 4 officially.
        num_horizontal_filters (`int`) [num-horiz]: per height, 16 officially.
    """

    model_type = "paperzoo_caser"

    max_length: int = 5
    num_vertical_filters: int = 4
    num_horizontal_filters: int = 16

    def validate(self):
        positive_int("num_vertical_filters", self.num_vertical_filters)
        positive_int("num_horizontal_filters", self.num_horizontal_filters)
        super().validate()


__all__ = ["CaserConfig"]

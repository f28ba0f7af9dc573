"""FMLP-Rec configuration (Zhou et al., "Filter-enhanced MLP is All You Need for Sequential Recommendation", WWW 2022;
as trained by the CE/SCE papers, MTandHJ/CE-SCE-LLMRec `FMLP-Rec/`)."""

from __future__ import annotations

from .seqrec import SequentialRecommenderConfig, positive_int


class FMLPRecConfig(SequentialRecommenderConfig):
    r"""FMLP-Rec: item + learned position embeddings, then `num_hidden_layers` blocks of a learnable filter in the
    frequency domain (FFT over the window, elementwise complex weights, inverse FFT) and a GELU FFN, each with a
    residual and LayerNorm; scores tied to the item table. See SequentialRecommenderConfig for the shared fields.

    The filter mixes every position of the window with every other, later ones included: a position's output reads
    the items after it. Only the LAST position of each window is therefore trained and scored (train on one window
    per target: `SequentialRecommendationProcessor.train_rows(..., every_prefix=True)`).

    Args:
        num_hidden_layers (`int`) [num-blocks]: 4 officially.
        intermediate_size (`int`, *optional*): the FFN width; None: 4 · hidden_size.
        layer_norm_eps (`float`): 1e-12 (the official code).
    """

    model_type = "paperzoo_fmlprec"

    num_hidden_layers: int = 4
    intermediate_size: int | None = None
    layer_norm_eps: float = 1e-12

    def __post_init__(self, **kwargs):
        if self.intermediate_size is None:
            self.intermediate_size = 4 * self.hidden_size
        super().__post_init__(**kwargs)

    def validate(self):
        positive_int("num_hidden_layers", self.num_hidden_layers)
        positive_int("intermediate_size", self.intermediate_size)
        if not self.layer_norm_eps > 0:
            raise ValueError(f"layer_norm_eps={self.layer_norm_eps!r} must be > 0")
        super().validate()


__all__ = ["FMLPRecConfig"]

"""What every sequential recommender of the CE/SCE papers shares (Xu et al., arXiv 2402.06216 and 2408.14238; official
code MTandHJ/CE-SCE-LLMRec on freerec 0.6): the item table (id 0 = padding, scores tied to the item embeddings), the
window of recent items, and the training loss with its negative sampling."""

from __future__ import annotations

from transformers import PreTrainedConfig

LOSS_TYPES = ("ce", "sce", "nce", "neg", "bce", "bpr", "ssm")
NEGATIVE_POOLS = ("all", "unseen")
# the official defaults per loss: BCE and BPR draw one negative the user has not seen; the others K uniform items
_SINGLE_UNSEEN = ("bce", "bpr")


def positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name}={value!r} must be a positive integer")
    return value


class SequentialRecommenderConfig(PreTrainedConfig):
    r"""Shared fields (official flag in brackets).

    Args:
        num_items (`int`): N, the number of items; ids 1..N, 0 is padding.
        max_length (`int`) [maxlen]: the most recent items a prediction reads.
        hidden_size (`int`) [embedding-dim]: d.
        hidden_dropout_prob (`float`) [dropout-rate].
        loss_type (`str`) [loss]: "ce" (full softmax over all N items), "sce" (scaled CE: −s⁺ + log(e^{s⁺} +
            α Σ_k e^{s⁻_k})), "ssm" (sampled softmax: SCE with α = 1), "nce" (noise-contrastive, shift c), "neg"
            (negative sampling), "bce" (SASRec's classic loss), "bpr".
        num_negatives (`int`, *optional*) [num-negs]: K negatives per position; None: 1 for bce/bpr, 100 otherwise.
        sce_alpha (`float`) [alpha]: α of SCE (official 100).
        nce_c (`float`) [c]: c of NCE (official 10).
        negative_pool (`str`, *optional*) [neg-pool]: "all" (uniform over items, the target may be drawn) or "unseen"
            (items absent from the training row); None: "unseen" for bce/bpr, "all" otherwise.
        fused_cross_entropy (`bool`, *optional*): True: "ce" through paperzoo.kernels.linear_cross_entropy (the
            [positions, N] logits are never materialised: chunked in PyTorch, tiled in Triton on CUDA); False: the
            plain logits; None (auto): fused on CUDA, or where the logits of a batch would pass 256 MiB (on a CPU the
            chunked form is slower than one matmul over a small item table, ~1.3× on ml-100k).
        kernel_backend (`str`): "auto" | "reference" | "triton" for the fused full-softmax CE.
    """

    keys_to_ignore_at_inference = ["last_hidden_state"]  # Trainer's predictions: the item scores only

    num_items: int = 1682
    max_length: int = 50
    hidden_size: int = 64
    hidden_dropout_prob: float = 0.2
    loss_type: str = "ce"
    num_negatives: int | None = None
    sce_alpha: float = 100.0
    nce_c: float = 10.0
    negative_pool: str | None = None
    fused_cross_entropy: bool | None = None
    kernel_backend: str = "auto"
    initializer_range: float = 0.02
    pad_token_id: int | None = 0

    def __post_init__(self, **kwargs):
        if self.num_negatives is None:
            self.num_negatives = 1 if self.loss_type in _SINGLE_UNSEEN else 100
        if self.negative_pool is None:
            self.negative_pool = "unseen" if self.loss_type in _SINGLE_UNSEEN else "all"
        super().__post_init__(**kwargs)
        self.validate()

    def validate(self):
        """ValueError naming the first field that cannot work."""
        for name in ("num_items", "max_length", "hidden_size", "num_negatives"):
            positive_int(name, getattr(self, name))
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type={self.loss_type!r} is not one of {LOSS_TYPES}")
        if self.negative_pool not in NEGATIVE_POOLS:
            raise ValueError(f"negative_pool={self.negative_pool!r} is not one of {NEGATIVE_POOLS}")
        if not 0 <= self.hidden_dropout_prob < 1:
            raise ValueError(f"hidden_dropout_prob={self.hidden_dropout_prob!r} must be in [0, 1)")
        if not self.sce_alpha > 0:
            raise ValueError(f"sce_alpha={self.sce_alpha!r} must be > 0")
        if self.fused_cross_entropy is not None and not isinstance(self.fused_cross_entropy, bool):
            raise ValueError(f"fused_cross_entropy={self.fused_cross_entropy!r} must be True, False or None (auto)")
        if self.kernel_backend not in ("auto", "reference", "triton"):
            raise ValueError(f"kernel_backend={self.kernel_backend!r} is not one of ('auto', 'reference', 'triton')")
        if self.pad_token_id != 0:
            raise ValueError(f"pad_token_id={self.pad_token_id!r}: item id 0 is the padding")
        super_validate = getattr(super(), "validate", None)
        if super_validate is not None:
            super_validate()

    @property
    def vocab_size(self) -> int:
        """Rows of the item table: N items and the padding."""
        return self.num_items + 1


__all__ = ["LOSS_TYPES", "SequentialRecommenderConfig"]

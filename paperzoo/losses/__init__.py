"""Loss functions shared by several models (DESIGN §1).

`recommendation`: the next-item losses of sequential recommendation compared by Xu et al. (arXiv 2402.06216,
2408.14238): full cross-entropy (CE), scaled cross-entropy (SCE), sampled softmax (SSM), NCE, NEG, BCE and BPR, as pure
functions of already-gathered scores, and the uniform negative sampler (`pool="all"` or `"unseen"`).
"""

from .recommendation import (
    binary_cross_entropy,
    bpr,
    full_cross_entropy,
    negative_sampling,
    noise_contrastive_estimation,
    sample_negatives,
    sampled_softmax,
    scaled_cross_entropy,
    seen_mask,
)

__all__ = [
    "binary_cross_entropy",
    "bpr",
    "full_cross_entropy",
    "negative_sampling",
    "noise_contrastive_estimation",
    "sample_negatives",
    "sampled_softmax",
    "scaled_cross_entropy",
    "seen_mask",
]

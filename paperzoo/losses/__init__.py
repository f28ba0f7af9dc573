"""Loss functions shared by several models (DESIGN §1).

`recommendation`: the next-item losses of sequential recommendation compared by Xu et al. (arXiv 2402.06216,
2408.14238): full cross-entropy (CE), scaled cross-entropy (SCE), sampled softmax (SSM), NCE, NEG, BCE and BPR, as pure
functions of already-gathered scores, and the uniform negative sampler (`pool="all"` or `"unseen"`).
"""

from . import recommendation
from .recommendation import *  # noqa: F403 (the module's public functions, listed once in its __all__)

__all__ = list(recommendation.__all__)

"""Caser (Tang & Wang, WSDM 2018) as trained by the CE/SCE papers (MTandHJ/CE-SCE-LLMRec `Caser/`), at every position:

    X_t = E[items t−L+1 .. t]                             an L × d "image" (left-padded with the zero padding row)
    o_h = max_time ReLU(conv_{h×d}(X_t))   for h = 1..L   horizontal filters (num_horizontal_filters each)
    o_v = conv_{L×1}(X_t)                                 vertical filters (num_vertical_filters)
    h_t = ReLU(W [o_v ‖ o_1 ‖ … ‖ o_L] + b)              dropout before W;  s_j = ⟨h_t, E[j]⟩
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..configuration.caser import CaserConfig
from .seqrec import SequentialRecommenderPreTrainedModel


class CaserForSequentialRecommendation(SequentialRecommenderPreTrainedModel):
    config_class = CaserConfig

    def __init__(self, config: CaserConfig):
        super().__init__(config)
        L, d = config.max_length, config.hidden_size
        self.item_embeddings = nn.Embedding(config.num_items + 1, d, padding_idx=0)
        self.vertical = nn.Conv2d(1, config.num_vertical_filters, (L, 1))
        self.horizontal = nn.ModuleList(nn.Conv2d(1, config.num_horizontal_filters, (h, d)) for h in range(1, L + 1))
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.fc = nn.Linear(config.num_vertical_filters * d + config.num_horizontal_filters * L, d)
        self.post_init()

    def encode(self, input_ids: torch.LongTensor, mask: torch.Tensor) -> torch.Tensor:
        B, T = input_ids.shape
        L = self.config.max_length
        windows = F.pad(input_ids * mask, (L - 1, 0)).unfold(1, L, 1)  # [B, T, L]: the L items up to each position
        x = self.item_embeddings(windows.reshape(B * T, L))[:, None]  # [B·T, 1, L, d]
        vertical = self.vertical(x).flatten(1)  # [B·T, n_v · d]
        horizontal = [F.relu(conv(x)).squeeze(3).amax(2) for conv in self.horizontal]  # L × [B·T, n_h]
        h = F.relu(self.fc(self.dropout(torch.cat([vertical, *horizontal], 1))))
        return h.view(B, T, -1) * mask[..., None]


__all__ = ["CaserForSequentialRecommendation"]

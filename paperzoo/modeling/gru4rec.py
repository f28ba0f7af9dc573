"""GRU4Rec (Hidasi et al., ICLR 2016) as trained by the CE/SCE papers (MTandHJ/CE-SCE-LLMRec `GRU4Rec/`, freerec):

    x_t = Dropout(E[item_t]);  g_t = GRU(x_≤t);  h_t = Linear(g_t);  s_j = ⟨h_t, E[j]⟩

Left padding is skipped by the recurrence: padded steps keep the initial state (packed sequences), so a row's
states do not depend on how much padding precedes it.
"""

from __future__ import annotations

import torch
from torch import nn

from ..configuration.gru4rec import GRU4RecConfig
from .seqrec import SequentialRecommenderPreTrainedModel


class GRU4RecForSequentialRecommendation(SequentialRecommenderPreTrainedModel):
    config_class = GRU4RecConfig

    def __init__(self, config: GRU4RecConfig):
        super().__init__(config)
        d = config.hidden_size
        self.item_embeddings = nn.Embedding(config.num_items + 1, d, padding_idx=0)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.gru = nn.GRU(d, config.intermediate_size, num_layers=config.num_hidden_layers, batch_first=True)
        self.dense = nn.Linear(config.intermediate_size, d)
        self.post_init()

    def encode(self, input_ids: torch.LongTensor, mask: torch.Tensor) -> torch.Tensor:
        B, T = input_ids.shape
        x = self.dropout(self.item_embeddings(input_ids))  # [B, T, d]
        lengths = mask.sum(1)
        # left padding → right-aligned: move each row's items to the front, run the packed GRU, move back
        shift = (T - lengths)[:, None]
        index = (torch.arange(T, device=x.device)[None] + shift) % T  # [B, T]
        front = x.gather(1, index[..., None].expand_as(x))
        packed = nn.utils.rnn.pack_padded_sequence(front, lengths.clamp(min=1).cpu(), batch_first=True,
                                                   enforce_sorted=False)
        out, _ = self.gru(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=T)  # [B, T, h]
        back = (torch.arange(T, device=x.device)[None] - shift) % T
        out = out.gather(1, back[..., None].expand(B, T, out.shape[-1]))
        return self.dense(out) * mask[..., None]


__all__ = ["GRU4RecForSequentialRecommendation"]
